package domain

import "encoding/json"

// LeadCreated carries the complete initial state, so a projection or webhook
// subscriber can build the lead from this one event.
type LeadCreated struct {
	ID           string                     `json:"id"`
	Name         string                     `json:"name"`
	Email        *string                    `json:"email"`
	Phone        *string                    `json:"phone"`
	Company      *string                    `json:"company"`
	Title        *string                    `json:"title"`
	Source       *string                    `json:"source"`
	Status       LeadStatus                 `json:"status"`
	OwnerID      *string                    `json:"owner_id"`
	CustomFields map[string]json.RawMessage `json:"custom_fields"`
}

// LeadUpdated holds only the fields that changed, each with its new value;
// a field present as null was cleared. CustomFields, when present, is the
// complete object after the merge, not the patch that produced it, so
// applying the event needs no knowledge of merge-patch rules.
// Status changes are never here: they are LeadStatusChanged or LeadConverted.
type LeadUpdated struct {
	Name         Opt[string]                     `json:"name,omitzero"`
	Email        Opt[string]                     `json:"email,omitzero"`
	Phone        Opt[string]                     `json:"phone,omitzero"`
	Company      Opt[string]                     `json:"company,omitzero"`
	Title        Opt[string]                     `json:"title,omitzero"`
	Source       Opt[string]                     `json:"source,omitzero"`
	OwnerID      Opt[string]                     `json:"owner_id,omitzero"`
	CustomFields Opt[map[string]json.RawMessage] `json:"custom_fields,omitzero"`
}

// LeadStatusChanged moves a lead between the statuses a client may set.
// From is informational for subscribers; applying uses only To.
type LeadStatusChanged struct {
	From LeadStatus `json:"from"`
	To   LeadStatus `json:"to"`
}

// LeadConverted records that the lead became the deal DealID. It is the only
// way into the converted status.
type LeadConverted struct {
	DealID string     `json:"deal_id"`
	From   LeadStatus `json:"from"`
}

// LeadDeleted ends the lead's life. The stream, and so its history, remains.
type LeadDeleted struct{}

func (LeadCreated) EventType() string       { return EventLeadCreated }
func (LeadUpdated) EventType() string       { return EventLeadUpdated }
func (LeadStatusChanged) EventType() string { return EventLeadStatusChanged }
func (LeadConverted) EventType() string     { return EventLeadConverted }
func (LeadDeleted) EventType() string       { return EventLeadDeleted }

func (u LeadUpdated) empty() bool {
	return !u.Name.Set && !u.Email.Set && !u.Phone.Set && !u.Company.Set &&
		!u.Title.Set && !u.Source.Set && !u.OwnerID.Set && !u.CustomFields.Set
}
