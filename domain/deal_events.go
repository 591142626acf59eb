package domain

import "encoding/json"

// DealCreated carries the complete initial state. A deal may be created
// already won or lost (for example when importing history); Apply then sets
// closed_at from the event time.
type DealCreated struct {
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
}

// DealUpdated holds only the fields that changed, with their new values; see
// LeadUpdated. LostReason appears here only when the stage does not change
// in the same patch; otherwise DealLost carries it, or the stage change
// clears it.
type DealUpdated struct {
	Name              Opt[string]                     `json:"name,omitzero"`
	Amount            Opt[Amount]                     `json:"amount,omitzero"`
	Currency          Opt[string]                     `json:"currency,omitzero"`
	LeadID            Opt[string]                     `json:"lead_id,omitzero"`
	OwnerID           Opt[string]                     `json:"owner_id,omitzero"`
	ExpectedCloseDate Opt[Date]                       `json:"expected_close_date,omitzero"`
	LostReason        Opt[string]                     `json:"lost_reason,omitzero"`
	CustomFields      Opt[map[string]json.RawMessage] `json:"custom_fields,omitzero"`
}

// DealStageChanged moves a deal to an open stage. Leaving won or lost this
// way reopens the deal: closed_at and lost_reason are cleared.
type DealStageChanged struct {
	From DealStage `json:"from"`
	To   DealStage `json:"to"`
}

// DealWon closes the deal as won at the event's time.
type DealWon struct {
	From DealStage `json:"from"`
}

// DealLost closes the deal as lost at the event's time, with the reason.
type DealLost struct {
	From       DealStage `json:"from"`
	LostReason string    `json:"lost_reason"`
}

// DealDeleted ends the deal's life; its stream and history remain.
type DealDeleted struct{}

func (DealCreated) EventType() string      { return EventDealCreated }
func (DealUpdated) EventType() string      { return EventDealUpdated }
func (DealStageChanged) EventType() string { return EventDealStageChanged }
func (DealWon) EventType() string          { return EventDealWon }
func (DealLost) EventType() string         { return EventDealLost }
func (DealDeleted) EventType() string      { return EventDealDeleted }

func (u DealUpdated) empty() bool {
	return !u.Name.Set && !u.Amount.Set && !u.Currency.Set && !u.LeadID.Set && !u.OwnerID.Set &&
		!u.ExpectedCloseDate.Set && !u.LostReason.Set && !u.CustomFields.Set
}
