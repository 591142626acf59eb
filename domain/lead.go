package domain

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// LeadStatus is where a lead stands in qualification. The set is closed:
// use ParseLeadStatus to turn client input into one.
type LeadStatus string

const (
	LeadStatusNew         LeadStatus = "new"
	LeadStatusContacted   LeadStatus = "contacted"
	LeadStatusQualified   LeadStatus = "qualified"
	LeadStatusUnqualified LeadStatus = "unqualified"
	LeadStatusConverted   LeadStatus = "converted"
)

// ParseLeadStatus accepts exactly the contract's spellings. Errors are
// *ValidationError on the field "status".
func ParseLeadStatus(s string) (LeadStatus, error) {
	switch st := LeadStatus(s); st {
	case LeadStatusNew, LeadStatusContacted, LeadStatusQualified, LeadStatusUnqualified, LeadStatusConverted:
		return st, nil
	}
	return "", &ValidationError{Details: []FieldError{{
		Field: "status", Code: CodeInvalidValue,
		Message: "status must be one of new, contacted, qualified, unqualified, converted",
	}}}
}

// Lead is the state of a lead folded from its events. Its JSON form is the
// contract's public representation, so the API returns it unchanged.
type Lead struct {
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
	CreatedAt    time.Time                  `json:"created_at"`
	UpdatedAt    time.Time                  `json:"updated_at"`
	// Version is the number of events in the lead's stream: the ETag, and the
	// expected version when appending.
	Version int64 `json:"version"`
	// ConvertedDealID links a converted lead to the deal it became.
	ConvertedDealID string `json:"converted_deal_id,omitempty"`

	OrgID     string     `json:"-"`
	Deleted   bool       `json:"-"`
	DeletedAt *time.Time `json:"-"`
}

// MarshalJSON guarantees the contract's shape whatever state the struct was
// built in: custom_fields is always an object, times are UTC with a Z.
func (l Lead) MarshalJSON() ([]byte, error) {
	type wire Lead // drops the method, so json.Marshal does not recurse
	w := wire(l)
	w.CustomFields = orEmpty(w.CustomFields)
	w.CreatedAt, w.UpdatedAt = w.CreatedAt.UTC(), w.UpdatedAt.UTC()
	return json.Marshal(w)
}

// LeadInput is the body of POST /v1/leads.
type LeadInput struct {
	Name         string                     `json:"name"`
	Email        *string                    `json:"email"`
	Phone        *string                    `json:"phone"`
	Company      *string                    `json:"company"`
	Title        *string                    `json:"title"`
	Source       *string                    `json:"source"`
	Status       *string                    `json:"status"` // a string, so a bad value is a validation error, not a decode error
	OwnerID      *string                    `json:"owner_id"`
	CustomFields map[string]json.RawMessage `json:"custom_fields"`
}

// LeadPatch is the body of PATCH /v1/leads/{id}, a JSON merge patch.
type LeadPatch struct {
	Name         Opt[string]                     `json:"name"`
	Email        Opt[string]                     `json:"email"`
	Phone        Opt[string]                     `json:"phone"`
	Company      Opt[string]                     `json:"company"`
	Title        Opt[string]                     `json:"title"`
	Source       Opt[string]                     `json:"source"`
	OwnerID      Opt[string]                     `json:"owner_id"`
	Status       Opt[string]                     `json:"status"`
	CustomFields Opt[map[string]json.RawMessage] `json:"custom_fields"`
}

const convertOnlyMessage = `status "converted" can only be reached through POST /v1/leads/{id}/convert`

// CreateLead decides the events that create lead id in organization orgID.
// The organization is not part of the payload: it travels in Metadata.
func CreateLead(id, orgID string, in LeadInput) ([]Event, error) {
	if err := requireIDs("CreateLead", "a lead id", id, orgID); err != nil {
		return nil, err
	}
	var p problems
	checkName(&p, "name", in.Name)
	checkEmail(&p, "email", in.Email)
	checkText(&p, "phone", in.Phone)
	checkText(&p, "company", in.Company)
	checkText(&p, "title", in.Title)
	checkText(&p, "source", in.Source)
	checkText(&p, "owner_id", in.OwnerID)
	status := LeadStatusNew
	if in.Status != nil {
		switch st, err := ParseLeadStatus(*in.Status); {
		case err != nil:
			p.add("status", CodeInvalidValue, "status must be one of new, contacted, qualified, unqualified")
		case st == LeadStatusConverted:
			p.add("status", CodeInvalidValue, convertOnlyMessage)
		default:
			status = st
		}
	}
	custom := normalizeCustomFields(&p, "custom_fields", in.CustomFields)
	if err := p.err(); err != nil {
		return nil, err
	}
	return []Event{LeadCreated{
		ID:           id,
		Name:         in.Name,
		Email:        clonePtr(in.Email),
		Phone:        clonePtr(in.Phone),
		Company:      clonePtr(in.Company),
		Title:        clonePtr(in.Title),
		Source:       clonePtr(in.Source),
		Status:       status,
		OwnerID:      clonePtr(in.OwnerID),
		CustomFields: custom,
	}}, nil
}

// StreamVersion is the version of the record's stream the state was
// folded from (its ETag).
func (l Lead) StreamVersion() int64 { return l.Version }

// exists is false before creation and after deletion; commands treat both
// as "not found".
func (l Lead) exists() bool { return l.Version > 0 && !l.Deleted }

// Update decides the events for a merge patch. Fields set to their current
// value are not changes, so a patch that changes nothing yields no events
// (and no new version). Plain fields come first as LeadUpdated, then the
// status change, matching the order a reader of the history expects.
func (l Lead) Update(patch LeadPatch) ([]Event, error) {
	if !l.exists() {
		return nil, ErrNotFound
	}
	var p problems
	next := l
	next.Name = patchName(&p, l.Name, patch.Name)
	next.Email = patchChecked(&p, "email", l.Email, patch.Email, checkEmail)
	next.Phone = patchText(&p, "phone", l.Phone, patch.Phone)
	next.Company = patchText(&p, "company", l.Company, patch.Company)
	next.Title = patchText(&p, "title", l.Title, patch.Title)
	next.Source = patchText(&p, "source", l.Source, patch.Source)
	next.OwnerID = patchText(&p, "owner_id", l.OwnerID, patch.OwnerID)
	if patch.Status.Set {
		st, err := ParseLeadStatus(patch.Status.Value)
		switch {
		case patch.Status.Null:
			p.add("status", CodeRequired, "status cannot be cleared")
		case err != nil:
			p.add("status", CodeInvalidValue, "status must be one of new, contacted, qualified, unqualified")
		case st == LeadStatusConverted && l.Status != LeadStatusConverted:
			p.add("status", CodeInvalidValue, convertOnlyMessage)
		default:
			next.Status = st
		}
	}
	next.CustomFields = patchCustomFields(&p, l.CustomFields, patch.CustomFields)
	if err := p.err(); err != nil {
		return nil, err
	}
	// A converted lead is a record of a sale already handed to a deal; its
	// contact details may still be corrected, but it cannot be un-converted.
	if l.Status == LeadStatusConverted && next.Status != LeadStatusConverted {
		return nil, fmt.Errorf("%w: lead is converted; its status can no longer change", ErrConflict)
	}

	upd := LeadUpdated{
		Name:         nameChange(l.Name, next.Name),
		Email:        optFor(l.Email, next.Email),
		Phone:        optFor(l.Phone, next.Phone),
		Company:      optFor(l.Company, next.Company),
		Title:        optFor(l.Title, next.Title),
		Source:       optFor(l.Source, next.Source),
		OwnerID:      optFor(l.OwnerID, next.OwnerID),
		CustomFields: customFieldsChange(l.CustomFields, next.CustomFields),
	}
	var out []Event
	if !upd.empty() {
		out = append(out, upd)
	}
	if next.Status != l.Status {
		out = append(out, LeadStatusChanged{From: l.Status, To: next.Status})
	}
	return out, nil
}

// Convert decides the event that marks the lead as converted into dealID.
// Converting twice is a conflict rather than a no-op, so a retried request
// can never silently create a second deal.
func (l Lead) Convert(dealID string) ([]Event, error) {
	if !l.exists() {
		return nil, ErrNotFound
	}
	if l.Status == LeadStatusConverted {
		return nil, fmt.Errorf("%w: lead is already converted", ErrConflict)
	}
	if dealID == "" {
		return nil, errors.New("domain: Convert needs the id of the new deal")
	}
	return []Event{LeadConverted{DealID: dealID, From: l.Status}}, nil
}

// Delete decides the event that deletes the lead.
func (l Lead) Delete() ([]Event, error) { return decideDelete(l.exists(), LeadDeleted{}) }

// Apply folds one event into the lead. It is a pure function of the current
// state, the event and its metadata, never of the clock, so replaying a
// stream always rebuilds the same lead.
//
// The lead's ID comes from LeadCreated (FoldLead also presets it); the
// organization comes from the metadata. Every event, even one this build
// does not understand, advances Version and UpdatedAt, because Version must
// equal the stream position for optimistic concurrency to work.
func (l *Lead) Apply(e Event, m Metadata) {
	at := m.OccurredAt.UTC()
	switch e := e.(type) {
	case LeadCreated:
		l.ID, l.OrgID, l.CreatedAt = createdID(l.ID, e.ID), m.OrgID, at
		l.Name, l.Status, l.OwnerID = e.Name, e.Status, e.OwnerID
		l.Email, l.Phone, l.Company, l.Title, l.Source = e.Email, e.Phone, e.Company, e.Title, e.Source
		l.CustomFields = orEmpty(e.CustomFields)
	case LeadUpdated:
		l.Name = applyName(l.Name, e.Name)
		l.Email, l.Phone = applyOpt(l.Email, e.Email), applyOpt(l.Phone, e.Phone)
		l.Company, l.Title = applyOpt(l.Company, e.Company), applyOpt(l.Title, e.Title)
		l.Source, l.OwnerID = applyOpt(l.Source, e.Source), applyOpt(l.OwnerID, e.OwnerID)
		l.CustomFields = applyCustomFields(l.CustomFields, e.CustomFields)
	case LeadStatusChanged:
		l.Status = e.To
	case LeadConverted:
		l.Status = LeadStatusConverted
		l.ConvertedDealID = e.DealID
	case LeadDeleted:
		l.Deleted = true
		l.DeletedAt = &at
	}
	stamp(&l.UpdatedAt, &l.Version, at)
}

// FoldLead rebuilds lead id from its stream. It returns ErrNotFound when the
// stream holds no creation or ends in a deletion, together with the folded
// state, which history and as_of reads may still need.
func FoldLead(id string, events []Recorded) (Lead, error) { return fold(Lead{ID: id}, events) }

func clonePtr[T any](p *T) *T {
	if p == nil {
		return nil
	}
	v := *p
	return &v
}
