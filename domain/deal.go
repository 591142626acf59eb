package domain

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"
)

// DealStage is where a deal stands in the pipeline. Won and lost are the
// closed stages; the rest are open. The set is closed: use ParseDealStage.
type DealStage string

const (
	DealStageQualification DealStage = "qualification"
	DealStageNeedsAnalysis DealStage = "needs_analysis"
	DealStageProposal      DealStage = "proposal"
	DealStageNegotiation   DealStage = "negotiation"
	DealStageWon           DealStage = "won"
	DealStageLost          DealStage = "lost"
)

const stageList = "qualification, needs_analysis, proposal, negotiation, won, lost"

// ParseDealStage accepts exactly the contract's spellings. Errors are
// *ValidationError on the field "stage".
func ParseDealStage(s string) (DealStage, error) {
	switch st := DealStage(s); st {
	case DealStageQualification, DealStageNeedsAnalysis, DealStageProposal, DealStageNegotiation, DealStageWon, DealStageLost:
		return st, nil
	}
	return "", &ValidationError{Details: []FieldError{{Field: "stage", Code: CodeInvalidValue, Message: "stage must be one of " + stageList}}}
}

// Closed reports whether the stage ends the deal (won or lost).
func (s DealStage) Closed() bool { return s == DealStageWon || s == DealStageLost }

// Deal is the state of a deal folded from its events. Its JSON form is the
// contract's public representation.
type Deal struct {
	ID                string                     `json:"id"`
	Name              string                     `json:"name"`
	Amount            *Amount                    `json:"amount"`
	Currency          *string                    `json:"currency"`
	Stage             DealStage                  `json:"stage"`
	LeadID            *string                    `json:"lead_id"`
	OwnerID           *string                    `json:"owner_id"`
	ExpectedCloseDate *Date                      `json:"expected_close_date"`
	LostReason        *string                    `json:"lost_reason"`
	CustomFields      map[string]json.RawMessage `json:"custom_fields"`
	CreatedAt         time.Time                  `json:"created_at"`
	UpdatedAt         time.Time                  `json:"updated_at"`
	ClosedAt          *time.Time                 `json:"closed_at"`
	// Version is the number of events in the deal's stream; see Lead.Version.
	Version int64 `json:"version"`

	OrgID     string     `json:"-"`
	Deleted   bool       `json:"-"`
	DeletedAt *time.Time `json:"-"`
}

// MarshalJSON guarantees the contract's shape; see Lead.MarshalJSON.
func (d Deal) MarshalJSON() ([]byte, error) {
	type wire Deal
	w := wire(d)
	w.CustomFields = orEmpty(w.CustomFields)
	w.CreatedAt, w.UpdatedAt = w.CreatedAt.UTC(), w.UpdatedAt.UTC()
	if w.ClosedAt != nil {
		w.ClosedAt = ptr(w.ClosedAt.UTC())
	}
	return json.Marshal(w)
}

// DealInput is the body of POST /v1/deals.
type DealInput struct {
	Name              string                     `json:"name"`
	Amount            *Amount                    `json:"amount"`
	Currency          *string                    `json:"currency"`
	Stage             *string                    `json:"stage"` // a string, so a bad value is a validation error
	LeadID            *string                    `json:"lead_id"`
	OwnerID           *string                    `json:"owner_id"`
	ExpectedCloseDate *Date                      `json:"expected_close_date"`
	LostReason        *string                    `json:"lost_reason"`
	CustomFields      map[string]json.RawMessage `json:"custom_fields"`
}

// DealPatch is the body of PATCH /v1/deals/{id}, a JSON merge patch.
type DealPatch struct {
	Name              Opt[string]                     `json:"name"`
	Amount            Opt[Amount]                     `json:"amount"`
	Currency          Opt[string]                     `json:"currency"`
	Stage             Opt[string]                     `json:"stage"`
	LeadID            Opt[string]                     `json:"lead_id"`
	OwnerID           Opt[string]                     `json:"owner_id"`
	ExpectedCloseDate Opt[Date]                       `json:"expected_close_date"`
	LostReason        Opt[string]                     `json:"lost_reason"`
	CustomFields      Opt[map[string]json.RawMessage] `json:"custom_fields"`
}

// ConvertDealInput is the optional "deal" member of a lead conversion body.
type ConvertDealInput struct {
	Name     *string `json:"name"`
	Amount   *Amount `json:"amount"`
	Currency *string `json:"currency"`
}

// CreateDeal decides the events that create deal id in organization orgID.
func CreateDeal(id, orgID string, in DealInput) ([]Event, error) {
	if err := requireIDs("CreateDeal", "a deal id", id, orgID); err != nil {
		return nil, err
	}
	var p problems
	checkName(&p, "name", in.Name)
	checkCurrency(&p, "currency", in.Currency)
	checkText(&p, "lead_id", in.LeadID)
	checkText(&p, "owner_id", in.OwnerID)
	checkText(&p, "lost_reason", in.LostReason)
	stage := DealStageQualification
	if in.Stage != nil {
		st, err := ParseDealStage(*in.Stage)
		if err != nil {
			p.add("stage", CodeInvalidValue, "stage must be one of "+stageList)
		} else {
			stage = st
		}
	}
	custom := normalizeCustomFields(&p, "custom_fields", in.CustomFields)
	checkDealRules(&p, "", dealRules{amount: in.Amount, currency: in.Currency, stage: stage, lostReason: in.LostReason})
	if err := p.err(); err != nil {
		return nil, err
	}
	return []Event{DealCreated{
		ID:                id,
		Name:              in.Name,
		Amount:            clonePtr(in.Amount),
		Currency:          clonePtr(in.Currency),
		Stage:             stage,
		LeadID:            clonePtr(in.LeadID),
		OwnerID:           clonePtr(in.OwnerID),
		ExpectedCloseDate: clonePtr(in.ExpectedCloseDate),
		LostReason:        clonePtr(in.LostReason),
		CustomFields:      custom,
	}}, nil
}

// dealRules is the part of a deal that the cross-field rules look at.
type dealRules struct {
	amount     *Amount
	currency   *string
	stage      DealStage
	lostReason *string
}

// checkDealRules enforces the rules that tie fields together. prefix names
// the enclosing member of the request body ("deal." in a conversion).
func checkDealRules(p *problems, prefix string, r dealRules) {
	if r.amount != nil {
		if r.amount.IsNegative() {
			p.add(prefix+"amount", CodeMustBeNonNegative, "amount must be zero or more")
		}
		// An amount without a currency cannot be summed or reported.
		if r.currency == nil {
			p.add(prefix+"currency", CodeRequired, "currency is required when amount is set")
		}
	}
	switch {
	case r.stage == DealStageLost && (r.lostReason == nil || strings.TrimSpace(*r.lostReason) == ""):
		p.add(prefix+"lost_reason", CodeRequired, "lost_reason is required when stage is lost")
	case r.stage != DealStageLost && r.lostReason != nil:
		// Reopening a deal clears its lost reason, so one set on an open or
		// won deal would be silently dropped later; refuse it up front.
		p.add(prefix+"lost_reason", CodeInvalidValue, "lost_reason can only be set when stage is lost")
	}
}

// StreamVersion is the version of the record's stream the state was
// folded from (its ETag).
func (d Deal) StreamVersion() int64 { return d.Version }

func (d Deal) exists() bool { return d.Version > 0 && !d.Deleted }

// Update decides the events for a merge patch: DealUpdated for plain fields
// (if any changed), then one stage event if the stage changed: DealWon,
// DealLost (carrying the reason) or DealStageChanged. A patch moving to lost
// must carry lost_reason unless the deal is already lost with one.
func (d Deal) Update(patch DealPatch) ([]Event, error) {
	if !d.exists() {
		return nil, ErrNotFound
	}
	var p problems
	next := d
	next.Name = patchName(&p, d.Name, patch.Name)
	next.Amount = applyOpt(d.Amount, patch.Amount)
	next.Currency = patchChecked(&p, "currency", d.Currency, patch.Currency, checkCurrency)
	next.LeadID = patchText(&p, "lead_id", d.LeadID, patch.LeadID)
	next.OwnerID = patchText(&p, "owner_id", d.OwnerID, patch.OwnerID)
	next.ExpectedCloseDate = applyOpt(d.ExpectedCloseDate, patch.ExpectedCloseDate)
	if patch.Stage.Set {
		st, err := ParseDealStage(patch.Stage.Value)
		switch {
		case patch.Stage.Null:
			p.add("stage", CodeRequired, "stage cannot be cleared")
		case err != nil:
			p.add("stage", CodeInvalidValue, "stage must be one of "+stageList)
		default:
			next.Stage = st
		}
	}
	stageChanged := next.Stage != d.Stage
	if stageChanged && next.Stage != DealStageLost {
		next.LostReason = nil // leaving lost forgets why it was lost
	}
	next.LostReason = patchText(&p, "lost_reason", next.LostReason, patch.LostReason)
	next.CustomFields = patchCustomFields(&p, d.CustomFields, patch.CustomFields)
	checkDealRules(&p, "", dealRules{amount: next.Amount, currency: next.Currency, stage: next.Stage, lostReason: next.LostReason})
	if err := p.err(); err != nil {
		return nil, err
	}

	upd := DealUpdated{
		Name:              nameChange(d.Name, next.Name),
		Amount:            optFor(d.Amount, next.Amount),
		Currency:          optFor(d.Currency, next.Currency),
		LeadID:            optFor(d.LeadID, next.LeadID),
		OwnerID:           optFor(d.OwnerID, next.OwnerID),
		ExpectedCloseDate: optFor(d.ExpectedCloseDate, next.ExpectedCloseDate),
		CustomFields:      customFieldsChange(d.CustomFields, next.CustomFields),
	}
	if !stageChanged {
		upd.LostReason = optFor(d.LostReason, next.LostReason)
	}
	var out []Event
	if !upd.empty() {
		out = append(out, upd)
	}
	if stageChanged {
		out = append(out, stageEvent(d.Stage, next))
	}
	return out, nil
}

func stageEvent(from DealStage, next Deal) Event {
	switch next.Stage {
	case DealStageWon:
		return DealWon{From: from}
	case DealStageLost:
		return DealLost{From: from, LostReason: *next.LostReason}
	default:
		return DealStageChanged{From: from, To: next.Stage}
	}
}

// Delete decides the event that deletes the deal.
func (d Deal) Delete() ([]Event, error) { return decideDelete(d.exists(), DealDeleted{}) }

// DealFromConversion decides the events that create deal dealID from lead.
// Every deal field is optional: the name defaults to the lead's company, or
// its name when it has none; lead_id and owner_id come from the lead.
// Validation errors name fields under "deal.", as in the request body.
//
// The lead's own LeadConverted event comes from lead.Convert; the command
// appends both.
func DealFromConversion(dealID, orgID string, lead Lead, in ConvertDealInput) ([]Event, error) {
	if err := requireIDs("DealFromConversion", "a deal id", dealID, orgID); err != nil {
		return nil, err
	}
	if !lead.exists() {
		return nil, ErrNotFound
	}
	if lead.Status == LeadStatusConverted {
		return nil, fmt.Errorf("%w: lead is already converted", ErrConflict)
	}
	var p problems
	var name string
	switch {
	case in.Name != nil:
		name = *in.Name
		checkName(&p, "deal.name", name)
	case lead.Company != nil && strings.TrimSpace(*lead.Company) != "":
		// A company may be longer than a deal name may be; a default must
		// never fail validation the client cannot see.
		name = truncateChars(*lead.Company, MaxNameLength)
	default:
		name = lead.Name
	}
	checkCurrency(&p, "deal.currency", in.Currency)
	checkDealRules(&p, "deal.", dealRules{amount: in.Amount, currency: in.Currency, stage: DealStageQualification})
	if err := p.err(); err != nil {
		return nil, err
	}
	return []Event{DealCreated{
		ID:           dealID,
		Name:         name,
		Amount:       clonePtr(in.Amount),
		Currency:     clonePtr(in.Currency),
		Stage:        DealStageQualification,
		LeadID:       ptr(lead.ID),
		OwnerID:      clonePtr(lead.OwnerID),
		CustomFields: map[string]json.RawMessage{},
	}}, nil
}

func truncateChars(s string, n int) string {
	i := 0
	for pos := range s {
		if i == n {
			return s[:pos]
		}
		i++
	}
	return s
}

// Apply folds one event into the deal; see Lead.Apply for the guarantees.
// closed_at is the time of the event that closed the deal, taken from the
// metadata so that replays reproduce it exactly.
func (d *Deal) Apply(e Event, m Metadata) {
	at := m.OccurredAt.UTC()
	switch e := e.(type) {
	case DealCreated:
		d.ID, d.OrgID, d.CreatedAt = createdID(d.ID, e.ID), m.OrgID, at
		d.Name, d.Stage, d.OwnerID = e.Name, e.Stage, e.OwnerID
		d.Amount, d.Currency, d.LeadID = e.Amount, e.Currency, e.LeadID
		d.ExpectedCloseDate, d.LostReason = e.ExpectedCloseDate, e.LostReason
		d.CustomFields = orEmpty(e.CustomFields)
		if e.Stage.Closed() {
			d.ClosedAt = &at
		}
	case DealUpdated:
		d.Name = applyName(d.Name, e.Name)
		d.Amount, d.Currency = applyOpt(d.Amount, e.Amount), applyOpt(d.Currency, e.Currency)
		d.LeadID, d.OwnerID = applyOpt(d.LeadID, e.LeadID), applyOpt(d.OwnerID, e.OwnerID)
		d.ExpectedCloseDate = applyOpt(d.ExpectedCloseDate, e.ExpectedCloseDate)
		d.LostReason = applyOpt(d.LostReason, e.LostReason)
		d.CustomFields = applyCustomFields(d.CustomFields, e.CustomFields)
	case DealStageChanged:
		d.Stage = e.To
		if e.To.Closed() {
			d.ClosedAt = &at
		} else {
			d.ClosedAt = nil
			d.LostReason = nil
		}
	case DealWon:
		d.Stage = DealStageWon
		d.ClosedAt = &at
		d.LostReason = nil
	case DealLost:
		d.Stage = DealStageLost
		d.ClosedAt = &at
		d.LostReason = ptr(e.LostReason)
	case DealDeleted:
		d.Deleted = true
		d.DeletedAt = &at
	}
	stamp(&d.UpdatedAt, &d.Version, at)
}

// FoldDeal rebuilds deal id from its stream; see FoldLead.
func FoldDeal(id string, events []Recorded) (Deal, error) { return fold(Deal{ID: id}, events) }
