package projections

import (
	"encoding/json"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/salesos/salesos/commands"
	"github.com/salesos/salesos/domain"
)

// clock hands out times under the test's control: several records can
// share a created_at, so the cursor's id tie-break is exercised.
type clock struct{ at time.Time }

func (c *clock) now() time.Time { return c.at }

// project catches both projections up with what was written so far.
func (f *fixture) project(t *testing.T) {
	t.Helper()
	for _, p := range []Projection{Leads{Driver: f.d}, Deals{Driver: f.d}} {
		if _, err := CatchUp(ctxT(t), f.db, f.d, f.store, p, 7); err != nil {
			t.Fatal(err)
		}
	}
}

func leadIDs(ls []domain.Lead) []string {
	out := make([]string, len(ls))
	for i, l := range ls {
		out[i] = l.ID
	}
	return out
}

// newestFirst sorts ids the way the lists order records: created_at
// descending, then id descending.
func newestFirst(created map[string]time.Time, ids []string) []string {
	out := slices.Clone(ids)
	slices.SortFunc(out, func(a, b string) int {
		if c := created[b].Compare(created[a]); c != 0 {
			return c
		}
		return strings.Compare(b, a)
	})
	return out
}

func TestListLeadsFiltersAndCursors(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	clk := &clock{at: time.Date(2026, 3, 1, 9, 0, 0, 123456000, time.UTC)}
	f.cmd.Now = clk.now
	ctx := ctxT(t)
	other := commands.Meta{OrgID: "org_other", Actor: meta.Actor}

	created := map[string]time.Time{}
	var all []string
	mk := func(m commands.Meta, in domain.LeadInput) string {
		t.Helper()
		res, err := f.cmd.CreateLead(ctx, m, in)
		if err != nil {
			t.Fatal(err)
		}
		if m.OrgID == meta.OrgID {
			created[res.Record.ID] = res.Record.CreatedAt
			all = append(all, res.Record.ID)
		}
		return res.Record.ID
	}
	// Three leads per instant, so pages end in the middle of a tie.
	byName := map[string]string{}
	names := []string{"Ada Lovelace", "Grace Hopper", "Alan Turing", "50% Off Ltd", "500 Off Ltd", "snake_case", "snakeXcase", "Émile Zola", "Linus"}
	for i, name := range names {
		if i%3 == 0 {
			clk.at = clk.at.Add(time.Second)
		}
		in := domain.LeadInput{Name: name, OwnerID: ptr(fmt.Sprintf("user_%d", i%2))}
		switch name {
		case "Grace Hopper":
			in.Company = ptr("ACME Corp")
			in.CustomFields = map[string]json.RawMessage{"tier": json.RawMessage(`"gold"`), "seats": json.RawMessage(`[1, 2, {"x": null}]`)}
		case "Alan Turing":
			in.Email = ptr("alan@acme.example")
		}
		byName[name] = mk(meta, in)
	}
	mk(other, domain.LeadInput{Name: "Ada of another org", Company: ptr("ACME")})
	if _, err := f.cmd.UpdateLead(ctx, meta, byName["Alan Turing"], domain.LeadPatch{Status: domain.OptOf("qualified")}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.cmd.DeleteLead(ctx, meta, byName["Linus"], nil); err != nil {
		t.Fatal(err)
	}
	live := slices.DeleteFunc(slices.Clone(all), func(id string) bool { return id == byName["Linus"] })
	f.project(t)
	q := Queries{DB: f.read, Driver: f.d}

	// Every page size walks the same order, nothing skipped or repeated.
	want := newestFirst(created, live)
	for limit := 1; limit <= len(want)+1; limit++ {
		var got []string
		var after *Cursor
		for pages := 0; ; pages++ {
			if pages > len(want)+1 {
				t.Fatalf("limit %d: the cursor does not advance", limit)
			}
			page, err := q.ListLeads(ctx, meta.OrgID, LeadFilter{Limit: limit, After: after})
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, leadIDs(page.Data)...)
			if !page.HasMore {
				if page.NextCursor != nil {
					t.Fatalf("limit %d: a cursor on the last page", limit)
				}
				break
			}
			// Through the client's opaque form, as the API does.
			c, err := DecodeCursor(page.NextCursor.Encode())
			if err != nil {
				t.Fatal(err)
			}
			after = &c
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("limit %d: pages gave\n %v\nwant\n %v", limit, got, want)
		}
	}

	list := func(fl LeadFilter) []string {
		t.Helper()
		fl.Limit = 100
		page, err := q.ListLeads(ctx, meta.OrgID, fl)
		if err != nil {
			t.Fatal(err)
		}
		return leadIDs(page.Data)
	}
	pick := func(names ...string) []string {
		ids := make([]string, len(names))
		for i, n := range names {
			ids[i] = byName[n]
		}
		return newestFirst(created, ids)
	}
	afterFirst := created[byName["Ada Lovelace"]]
	for _, tc := range []struct {
		name   string
		filter LeadFilter
		want   []string
	}{
		{"status", LeadFilter{Status: "qualified"}, pick("Alan Turing")},
		{"owner", LeadFilter{OwnerID: "user_1"}, pick("Grace Hopper", "50% Off Ltd", "snake_case", "Émile Zola")},
		{"q matches name, any case", LeadFilter{Q: "ada LOVE"}, pick("Ada Lovelace")},
		{"q matches company", LeadFilter{Q: "acme corp"}, pick("Grace Hopper")},
		{"q matches email", LeadFilter{Q: "ACME.EXAMPLE"}, pick("Alan Turing")},
		{"q percent is literal", LeadFilter{Q: "50%"}, pick("50% Off Ltd")},
		{"q underscore is literal", LeadFilter{Q: "e_c"}, pick("snake_case")},
		{"q non-ASCII", LeadFilter{Q: "Émile"}, pick("Émile Zola")},
		{"q non-ASCII, other case", LeadFilter{Q: "éMILE zOLA"}, pick("Émile Zola")},
		{"q no match", LeadFilter{Q: "nobody"}, nil},
		{"deleted are not listed", LeadFilter{Q: "linus"}, nil},
		{"created after", LeadFilter{CreatedAfter: &afterFirst}, pick("50% Off Ltd", "500 Off Ltd", "snake_case", "snakeXcase", "Émile Zola")},
		{"combined", LeadFilter{OwnerID: "user_0", Q: "off"}, pick("500 Off Ltd")},
	} {
		if got := list(tc.filter); !reflect.DeepEqual(got, tc.want) && (len(got) != 0 || len(tc.want) != 0) {
			t.Errorf("%s: got %v, want %v", tc.name, got, tc.want)
		}
	}

	// Reads return what the commands answered, to the microsecond.
	l, err := q.GetLead(ctx, meta.OrgID, byName["Grace Hopper"])
	if err != nil {
		t.Fatal(err)
	}
	if l.Name != "Grace Hopper" || l.Company == nil || *l.Company != "ACME Corp" || !l.CreatedAt.Equal(created[l.ID]) || l.CreatedAt.Location() != time.UTC {
		t.Errorf("GetLead = %+v", l)
	}
	for _, id := range []string{byName["Linus"], "lead_missing"} {
		if _, err := q.GetLead(ctx, meta.OrgID, id); !errors.Is(err, domain.ErrNotFound) {
			t.Errorf("GetLead(%s) = %v, want ErrNotFound", id, err)
		}
	}
	if _, err := q.GetLead(ctx, other.OrgID, byName["Ada Lovelace"]); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("another organization's lead: %v, want ErrNotFound", err)
	}
	// Every field, custom_fields included, reads back as the fold of the
	// stream has it.
	folded, err := LeadAsOf(ctx, f.store, meta.OrgID, byName["Grace Hopper"], clk.at.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(l)
	b, _ := json.Marshal(folded)
	if string(a) != string(b) {
		t.Errorf("GetLead and the fold differ:\n %s\n %s", a, b)
	}
}

func TestDealsExactAmountsFiltersAndCursors(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	clk := &clock{at: time.Date(2026, 4, 1, 12, 0, 0, 999999000, time.UTC)}
	f.cmd.Now = clk.now
	ctx := ctxT(t)

	lead, err := f.cmd.CreateLead(ctx, meta, domain.LeadInput{Name: "Buyer"})
	if err != nil {
		t.Fatal(err)
	}
	created := map[string]time.Time{}
	byName := map[string]string{}
	amounts := map[string]string{
		"Big":   "123456789012345.123456",
		"Cents": "0.10",
		"Whole": "100",
		"Tiny":  "0.000001",
	}
	date, _ := domain.ParseDate("2026-12-31")
	names := []string{"Big", "Cents", "Whole", "Tiny", "No amount", "100% Deal"}
	for i, name := range names {
		if i%2 == 0 {
			clk.at = clk.at.Add(time.Millisecond)
		}
		in := domain.DealInput{Name: name, Currency: ptr("EUR"), OwnerID: ptr(fmt.Sprintf("user_%d", i%2))}
		if s, ok := amounts[name]; ok {
			a, err := domain.ParseAmount(s)
			if err != nil {
				t.Fatal(err)
			}
			in.Amount = &a
		}
		if name == "Big" {
			in.ExpectedCloseDate = &date
			in.LeadID = &lead.Record.ID
			in.CustomFields = map[string]json.RawMessage{"region": json.RawMessage(`"EMEA"`), "score": json.RawMessage(`0.5`)}
		}
		res, err := f.cmd.CreateDeal(ctx, meta, in)
		if err != nil {
			t.Fatal(err)
		}
		byName[name] = res.Record.ID
		created[res.Record.ID] = res.Record.CreatedAt
	}
	if _, err := f.cmd.UpdateDeal(ctx, meta, byName["Whole"], domain.DealPatch{Stage: domain.OptOf("won")}, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := f.cmd.DeleteDeal(ctx, meta, byName["Tiny"], nil); err != nil {
		t.Fatal(err)
	}
	f.project(t)
	q := Queries{DB: f.read, Driver: f.d}

	for name, s := range amounts {
		d, err := q.GetDeal(ctx, meta.OrgID, byName[name])
		if name == "Tiny" {
			if !errors.Is(err, domain.ErrNotFound) {
				t.Errorf("deleted deal: %v, want ErrNotFound", err)
			}
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		want, _ := domain.ParseAmount(s)
		if d.Amount == nil || d.Amount.String() != want.String() {
			t.Errorf("%s: amount %v, want %s", name, d.Amount, want)
		}
	}
	big, err := q.GetDeal(ctx, meta.OrgID, byName["Big"])
	if err != nil {
		t.Fatal(err)
	}
	folded, err := DealAsOf(ctx, f.store, meta.OrgID, byName["Big"], clk.at.Add(time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	a, _ := json.Marshal(big)
	b, _ := json.Marshal(folded)
	if string(a) != string(b) {
		t.Errorf("GetDeal and the fold differ:\n %s\n %s", a, b)
	}
	if big.ExpectedCloseDate == nil || big.ExpectedCloseDate.String() != "2026-12-31" || string(big.CustomFields["region"]) != `"EMEA"` {
		t.Errorf("GetDeal = %s", a)
	}
	if _, err := q.GetDeal(ctx, "org_other", byName["Big"]); !errors.Is(err, domain.ErrNotFound) {
		t.Errorf("another organization's deal: %v, want ErrNotFound", err)
	}

	ids := func(p Page[domain.Deal]) []string {
		out := make([]string, len(p.Data))
		for i, d := range p.Data {
			out[i] = d.ID
		}
		return out
	}
	pick := func(names ...string) []string {
		out := make([]string, len(names))
		for i, n := range names {
			out[i] = byName[n]
		}
		return newestFirst(created, out)
	}
	var got []string
	var after *Cursor
	for {
		page, err := q.ListDeals(ctx, meta.OrgID, DealFilter{Limit: 2, After: after})
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, ids(page)...)
		if !page.HasMore {
			break
		}
		after = page.NextCursor
	}
	if want := pick("Big", "Cents", "Whole", "No amount", "100% Deal"); !reflect.DeepEqual(got, want) {
		t.Fatalf("pages: %v, want %v", got, want)
	}
	for _, tc := range []struct {
		name   string
		filter DealFilter
		want   []string
	}{
		{"stage", DealFilter{Stage: "won"}, pick("Whole")},
		{"owner", DealFilter{OwnerID: "user_1"}, pick("Cents", "100% Deal")},
		{"lead", DealFilter{LeadID: lead.Record.ID}, pick("Big")},
		{"q any case", DealFilter{Q: "bIg"}, pick("Big")},
		{"q percent is literal", DealFilter{Q: "0%"}, pick("100% Deal")},
		{"created after", DealFilter{CreatedAfter: ptr(created[byName["Cents"]])}, pick("Whole", "No amount", "100% Deal")},
	} {
		page, err := q.ListDeals(ctx, meta.OrgID, DealFilter{Stage: tc.filter.Stage, OwnerID: tc.filter.OwnerID, LeadID: tc.filter.LeadID, Q: tc.filter.Q, CreatedAfter: tc.filter.CreatedAfter, Limit: 50})
		if err != nil {
			t.Fatal(err)
		}
		if g := ids(page); !reflect.DeepEqual(g, tc.want) {
			t.Errorf("%s: got %v, want %v", tc.name, g, tc.want)
		}
	}
}

// One field changed per event, each event applied in a transaction of its
// own: every change lands in the row (SQLite writes only the columns that
// changed, so each column is exercised on its own), and the row always
// equals the fold of the stream.
func TestEachFieldChangeIsProjected(t *testing.T) {
	t.Parallel()
	f := newFixture(t)
	ctx := ctxT(t)
	q := Queries{DB: f.read, Driver: f.d}
	catchUp := func() {
		t.Helper()
		for _, p := range []Projection{Leads{Driver: f.d}, Deals{Driver: f.d}} {
			if _, err := CatchUp(ctx, f.db, f.d, f.store, p, 1); err != nil {
				t.Fatal(err)
			}
		}
	}
	same := func(what string, got, want any) {
		t.Helper()
		a, _ := json.Marshal(got)
		b, _ := json.Marshal(want)
		if string(a) != string(b) {
			t.Fatalf("after %s:\n table %s\n fold  %s", what, a, b)
		}
	}
	far := time.Now().Add(time.Hour)

	lead, err := f.cmd.CreateLead(ctx, meta, domain.LeadInput{
		Name: "Ada", Email: ptr("ada@example.com"), Phone: ptr("+1 555"), Company: ptr("Engines"), Title: ptr("CTO"),
		Source: ptr("web"), OwnerID: ptr("user_1"), CustomFields: map[string]json.RawMessage{"tier": json.RawMessage(`"gold"`)},
	})
	if err != nil {
		t.Fatal(err)
	}
	id := lead.Record.ID
	leadPatches := []struct {
		what  string
		patch domain.LeadPatch
	}{
		{"name", domain.LeadPatch{Name: domain.OptOf("Ada L.")}},
		{"email cleared", domain.LeadPatch{Email: domain.OptNull[string]()}},
		{"phone", domain.LeadPatch{Phone: domain.OptOf("+1 556")}},
		{"company", domain.LeadPatch{Company: domain.OptOf("Analytical Engines")}},
		{"title cleared", domain.LeadPatch{Title: domain.OptNull[string]()}},
		{"source", domain.LeadPatch{Source: domain.OptOf("referral")}},
		{"owner", domain.LeadPatch{OwnerID: domain.OptOf("user_2")}},
		{"status", domain.LeadPatch{Status: domain.OptOf("qualified")}},
		{"custom fields", domain.LeadPatch{CustomFields: domain.OptOf(map[string]json.RawMessage{"tier": json.RawMessage(`"silver"`), "n": json.RawMessage(`2`)})}},
		{"email set again", domain.LeadPatch{Email: domain.OptOf("ada@engines.example")}},
	}
	for _, p := range leadPatches {
		if _, err := f.cmd.UpdateLead(ctx, meta, id, p.patch, nil); err != nil {
			t.Fatalf("%s: %v", p.what, err)
		}
		catchUp()
		got, err := q.GetLead(ctx, meta.OrgID, id)
		if err != nil {
			t.Fatal(err)
		}
		want, err := LeadAsOf(ctx, f.store, meta.OrgID, id, far)
		if err != nil {
			t.Fatal(err)
		}
		same(p.what, got, want)
	}
	// The owner filter follows an owner change.
	if page, err := q.ListLeads(ctx, meta.OrgID, LeadFilter{OwnerID: "user_2", Status: "qualified", Limit: 5}); err != nil || len(page.Data) != 1 {
		t.Fatalf("owner filter after the change: %+v, %v", page.Data, err)
	}

	amount, _ := domain.ParseAmount("1000.50")
	conv, err := f.cmd.ConvertLead(ctx, meta, id, domain.ConvertDealInput{Amount: &amount, Currency: ptr("EUR")}, nil)
	if err != nil {
		t.Fatal(err)
	}
	catchUp()
	dealID := conv.Deal.ID
	bigger, _ := domain.ParseAmount("999999999999999.999999")
	date, _ := domain.ParseDate("2027-01-31")
	dealPatches := []struct {
		what  string
		patch domain.DealPatch
	}{
		{"amount", domain.DealPatch{Amount: domain.OptOf(bigger)}},
		{"currency", domain.DealPatch{Currency: domain.OptOf("USD")}},
		{"expected close date", domain.DealPatch{ExpectedCloseDate: domain.OptOf(date)}},
		{"owner", domain.DealPatch{OwnerID: domain.OptOf("user_3")}},
		{"custom fields", domain.DealPatch{CustomFields: domain.OptOf(map[string]json.RawMessage{"region": json.RawMessage(`"EMEA"`)})}},
		{"stage lost", domain.DealPatch{Stage: domain.OptOf("lost"), LostReason: domain.OptOf("budget")}},
		{"amount cleared", domain.DealPatch{Amount: domain.OptNull[domain.Amount]()}},
	}
	for _, p := range dealPatches {
		if _, err := f.cmd.UpdateDeal(ctx, meta, dealID, p.patch, nil); err != nil {
			t.Fatalf("%s: %v", p.what, err)
		}
		catchUp()
		got, err := q.GetDeal(ctx, meta.OrgID, dealID)
		if err != nil {
			t.Fatal(err)
		}
		want, err := DealAsOf(ctx, f.store, meta.OrgID, dealID, far)
		if err != nil {
			t.Fatal(err)
		}
		same(p.what, got, want)
	}
	if _, err := f.cmd.DeleteDeal(ctx, meta, dealID, nil); err != nil {
		t.Fatal(err)
	}
	catchUp()
	if _, err := q.GetDeal(ctx, meta.OrgID, dealID); !errors.Is(err, domain.ErrNotFound) {
		t.Fatalf("deleted deal: %v", err)
	}
	if page, err := q.ListDeals(ctx, meta.OrgID, DealFilter{Limit: 5}); err != nil || len(page.Data) != 0 {
		t.Fatalf("deleted deal listed: %+v, %v", page.Data, err)
	}
}
