package domain

import (
	"encoding/json"
	"errors"
	"testing"
)

// No event has a second version yet, so this exercises the upcasting
// mechanism on a registry of its own: a hand-written version-1 payload that
// named the old status "previous" is lifted to a version-2 shape.
func TestRegistryUpcastsOldPayloads(t *testing.T) {
	c := codecOf[LeadStatusChanged](2)
	c.upcaster = map[int]func(json.RawMessage) (json.RawMessage, error){
		1: func(v1 json.RawMessage) (json.RawMessage, error) {
			var old struct {
				Previous LeadStatus `json:"previous"`
				To       LeadStatus `json:"to"`
			}
			if err := json.Unmarshal(v1, &old); err != nil {
				return nil, err
			}
			return json.Marshal(LeadStatusChanged{From: old.Previous, To: old.To})
		},
	}
	r := registry{EventLeadStatusChanged: c}

	got, err := r.decode(EventLeadStatusChanged, 1, []byte(`{"previous":"new","to":"contacted"}`))
	if err != nil {
		t.Fatal(err)
	}
	if want := (LeadStatusChanged{From: LeadStatusNew, To: LeadStatusContacted}); got != want {
		t.Errorf("got %#v, want %#v", got, want)
	}
	if _, v, _, _ := r.encode(LeadStatusChanged{}); v != 2 {
		t.Errorf("encode writes version %d, want the current 2", v)
	}

	delete(c.upcaster, 1)
	if _, err := r.decode(EventLeadStatusChanged, 1, []byte(`{}`)); !errors.Is(err, ErrUnknownEvent) {
		t.Errorf("missing upcaster: err = %v, want ErrUnknownEvent", err)
	}
}
