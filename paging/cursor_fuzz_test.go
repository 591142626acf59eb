package paging

// Run with .ci/fuzz, or: go test -run '^$' -fuzz '^FuzzDecodeCursor$' -fuzztime 10s ./paging

import (
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

// FuzzDecodeCursor: a cursor from a client decodes only to a keyset
// position a query can use (an id that is non-empty text any database can
// store), and a decoded position encodes to a cursor that decodes to it
// again. Everything else is ErrBadCursor.
func FuzzDecodeCursor(f *testing.F) {
	for _, s := range []string{
		Cursor{CreatedAt: time.Unix(1_700_000_000, 123).UTC(), ID: "lead_01"}.Encode(),
		Cursor{CreatedAt: time.Unix(0, 0).UTC(), ID: "wh_x|y"}.Encode(),
		"MXwA", "MXz_", "MXw", "fA", "", "====", "LTF8eA", "OTIyMzM3MjAzNjg1NDc3NTgwOHx4",
	} {
		f.Add(s, int64(1_700_000_000_123_456_789))
	}
	f.Add("a|b", int64(-1))
	f.Add("é", int64(0))
	f.Fuzz(func(t *testing.T, s string, ns int64) {
		// Every position the server can hand out decodes back to itself
		// (with s as the record id, when it could be one).
		if s != "" && utf8.ValidString(s) && strings.IndexByte(s, 0) < 0 {
			own := Cursor{CreatedAt: time.Unix(0, ns).UTC(), ID: s}
			back, err := DecodeCursor(own.Encode())
			if err != nil || !back.CreatedAt.Equal(own.CreatedAt) || back.ID != s {
				t.Fatalf("%+v: round trip gives %+v, %v", own, back, err)
			}
		}
		c, err := DecodeCursor(s)
		if err != nil {
			if err != ErrBadCursor {
				t.Fatalf("DecodeCursor(%q) = %v, want ErrBadCursor", s, err)
			}
			return
		}
		if c.ID == "" || !utf8.ValidString(c.ID) || strings.IndexByte(c.ID, 0) >= 0 {
			t.Fatalf("DecodeCursor(%q) accepted id %q", s, c.ID)
		}
		if c.CreatedAt.Location() != time.UTC {
			t.Fatalf("DecodeCursor(%q) time %v not in UTC", s, c.CreatedAt)
		}
		back, err := DecodeCursor(c.Encode())
		if err != nil || !back.CreatedAt.Equal(c.CreatedAt) || back.ID != c.ID {
			t.Fatalf("cursor %+v: round trip gives %+v, %v", c, back, err)
		}
	})
}
