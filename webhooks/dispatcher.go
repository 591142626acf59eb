package webhooks

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/jmoiron/sqlx"

	"github.com/salesos/salesos/internal/dialect"
)

// DefaultSchedule is the wait before each retry, measured from the failure
// before it: 1st retry after 1 minute ... 5th after 12 hours. With the first
// attempt that is 6 attempts in all.
var DefaultSchedule = []time.Duration{time.Minute, 5 * time.Minute, 30 * time.Minute, 2 * time.Hour, 12 * time.Hour}

// DispatcherConfig tunes a Dispatcher; zero values mean the defaults.
type DispatcherConfig struct {
	// Schedule of retries (SALESOS_WEBHOOK_RETRY_SCHEDULE). Default
	// DefaultSchedule.
	Schedule []time.Duration
	// DeactivateAfter consecutive failed attempts of one webhook, across
	// all its deliveries, switch it off (SALESOS_WEBHOOK_DEACTIVATE_AFTER).
	// Default 10.
	DeactivateAfter int
	// Concurrency is the most attempts in flight in this process. Default
	// 64: deliveries are claimed and recorded in batches of up to this
	// many, and with 32 the claim and record transactions, not the
	// endpoints, capped the delivery rate (about 2,100/s beside a steady
	// stream of appends on 2 cores, 4,500/s with 64).
	Concurrency int
	// Lease is how long a claimed delivery belongs to this process. If it
	// dies, another dispatcher sends the delivery once the lease expires.
	// Default the sender's timeout + 30s.
	Lease time.Duration
	// PollInterval is the longest idle wait before looking for due
	// deliveries again. Default 200ms.
	PollInterval time.Duration
	// Wake, when set, returns a channel closed when new deliveries may have
	// been created in this process (the fan-out's progress), so they go out
	// without waiting for the poll.
	Wake   func() <-chan struct{}
	Sender *Sender
	Logger *slog.Logger
	// Owner names this process in leases. Default a random id.
	Owner string
	// OnOutcome, when set, is told the outcome of every recorded attempt:
	// "delivered", "retry" (failed, will be retried) or "failed" (for good).
	OnOutcome func(outcome string)
}

func (c *DispatcherConfig) setDefaults() {
	if len(c.Schedule) == 0 {
		c.Schedule = DefaultSchedule
	}
	if c.DeactivateAfter <= 0 {
		c.DeactivateAfter = 10
	}
	if c.Concurrency <= 0 {
		c.Concurrency = 64
	}
	if c.Sender == nil {
		c.Sender = NewSender(SenderConfig{})
	}
	if c.Lease <= 0 {
		c.Lease = c.Sender.cfg.Timeout + 30*time.Second
	}
	if c.PollInterval <= 0 {
		c.PollInterval = 200 * time.Millisecond
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Owner == "" {
		c.Owner = newID("dispatcher")
	}
}

// Dispatcher sends due deliveries and records the outcome. Several
// dispatchers (in several instances) work side by side: a delivery is
// claimed with an expiring lease, in a transaction that excludes the other
// claimers (FOR UPDATE SKIP LOCKED on PostgreSQL; on SQLite the claim is a
// write transaction, and the file has one writer at a time), so it is sent
// by one of them at a time.
//
// On SQLite db must be the file's writer handle (one connection); the
// dispatcher only ever uses it for one short transaction at a time and
// holds no transaction while sending.
type Dispatcher struct {
	db  *sqlx.DB
	cfg DispatcherConfig

	results chan result
}

// NewDispatcher prepares a dispatcher; Run starts it.
func NewDispatcher(db *sqlx.DB, cfg DispatcherConfig) *Dispatcher {
	cfg.setDefaults()
	return &Dispatcher{db: db, cfg: cfg, results: make(chan result, cfg.Concurrency*2)}
}

// claimed is a delivery this process holds the lease of.
type claimed struct {
	ID        string `db:"id"`
	WebhookID string `db:"webhook_id"`
	EventID   string `db:"event_id"`
	Payload   string `db:"payload"`
	Attempts  int    `db:"attempts"`
	URL       string `db:"url"`
	Secret    string `db:"secret"`
	Failures  int    `db:"consecutive_failures"`
}

type result struct {
	d       claimed
	at      time.Time
	attempt Attempt
}

// Run sends deliveries until ctx ends. In-flight attempts finish and are
// recorded before it returns (each is bounded by the sender's timeout).
func (d *Dispatcher) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	recorderDone := make(chan struct{})
	go func() {
		defer close(recorderDone)
		d.record()
	}()
	slots := make(chan struct{}, d.cfg.Concurrency)
	freed := make(chan struct{}, 1)
	for ctx.Err() == nil {
		var wake <-chan struct{}
		if d.cfg.Wake != nil {
			wake = d.cfg.Wake()
		}
		free := d.cfg.Concurrency - len(slots)
		// Claim in chunks: a claim is a transaction, and claiming one
		// delivery per freed slot would make it the bottleneck.
		var batch []claimed
		if free > 0 && (free >= max(1, d.cfg.Concurrency/4) || free == d.cfg.Concurrency) {
			var err error
			batch, err = d.claim(ctx, free)
			if err != nil && ctx.Err() == nil {
				d.cfg.Logger.Warn("webhooks: claiming deliveries failed", "error", err)
			}
		}
		for _, c := range batch {
			slots <- struct{}{}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer func() {
					<-slots
					select {
					case freed <- struct{}{}:
					default:
					}
				}()
				d.send(c)
			}()
		}
		if len(batch) == free && free > 0 {
			continue // there may be more due right now
		}
		t := time.NewTimer(d.cfg.PollInterval)
		select {
		case <-ctx.Done():
		case <-wake:
		case <-freed:
		case <-t.C:
		}
		t.Stop()
	}
	wg.Wait()
	close(d.results)
	<-recorderDone
	return nil
}

// claim leases up to n due deliveries of active webhooks. A webhook that is
// failing (consecutive_failures > 0) gets one attempt at a time, so its
// failures are counted one by one and it is switched off at exactly the
// threshold instead of after a burst.
func (d *Dispatcher) claim(ctx context.Context, n int) ([]claimed, error) {
	tx, err := d.db.BeginTxx(ctx, nil)
	if err != nil {
		return nil, err
	}
	defer tx.Rollback()
	// On PostgreSQL several dispatchers claim at once: rows are locked
	// (SKIP LOCKED) and times are the database's. On SQLite this
	// transaction began IMMEDIATE on the file's one writer, so it excludes
	// every other writer, in this process and in others: plain reads are
	// enough, and the times come from this machine's clock, the one every
	// process sharing the file uses.
	sqlite := dialect.IsSQLite(tx)
	now := dbNow()
	if !sqlite {
		if err := customPlans(ctx, tx); err != nil {
			return nil, err
		}
	}
	var cands []claimed
	// The inner query walks the due index in order and stops after n rows,
	// whatever the planner knows about the table; only then are the wide
	// columns (payload) fetched. It needs no webhook condition: deliveries
	// of inactive or deleted webhooks are paused (next_attempt_at NULL) and
	// are not in the due index.
	if sqlite {
		err = tx.SelectContext(ctx, &cands, `
			SELECT d.id, d.webhook_id, d.event_id, d.payload, d.attempts, w.url, w.secret, w.consecutive_failures
			FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
			WHERE d.id IN (
				SELECT x.id FROM webhook_deliveries x
				WHERE x.status = 'pending' AND x.next_attempt_at <= $2
				  AND (x.lease_expires_at IS NULL OR x.lease_expires_at < $2)
				ORDER BY x.next_attempt_at
				LIMIT $1)`, n, now)
	} else {
		err = tx.SelectContext(ctx, &cands, `
			SELECT d.id, d.webhook_id, d.event_id, d.payload, d.attempts, w.url, w.secret, w.consecutive_failures
			FROM webhook_deliveries d JOIN webhooks w ON w.id = d.webhook_id
			WHERE d.id IN (
				SELECT x.id FROM webhook_deliveries x
				WHERE x.status = 'pending' AND x.next_attempt_at <= now()
				  AND (x.lease_expires_at IS NULL OR x.lease_expires_at < now())
				ORDER BY x.next_attempt_at
				LIMIT $1
				FOR UPDATE OF x SKIP LOCKED)`, n)
	}
	if err != nil || len(cands) == 0 {
		return nil, err
	}
	// Lock the candidates' webhooks and read their state afresh: the
	// recorder updates the same rows in the transaction that ends an
	// attempt, so a webhook cannot be switched off, or an attempt end,
	// between this check and our lease. On PostgreSQL a webhook the
	// recorder holds right now is skipped this round (SKIP LOCKED) rather
	// than waited for: the two transactions lock deliveries and webhooks in
	// opposite orders. (On SQLite the recorder cannot be in between.)
	var hookIDs []string
	seen := map[string]bool{}
	for _, c := range cands {
		if !seen[c.WebhookID] {
			seen[c.WebhookID] = true
			hookIDs = append(hookIDs, c.WebhookID)
		}
	}
	inHooks, hooksArg, err := dialect.InList(tx, "id", 1, hookIDs)
	if err != nil {
		return nil, err
	}
	lock := ` ORDER BY id FOR UPDATE SKIP LOCKED`
	if sqlite {
		lock = ``
	}
	var states []struct {
		ID       string `db:"id"`
		Active   bool   `db:"active"`
		Failures int    `db:"consecutive_failures"`
	}
	if err := tx.SelectContext(ctx, &states, `SELECT id, active AND deleted_at IS NULL AS active, consecutive_failures
		FROM webhooks WHERE `+inHooks+lock, hooksArg); err != nil {
		return nil, err
	}
	active := map[string]bool{}
	var probing []string
	for _, st := range states {
		active[st.ID] = st.Active
		if st.Active && st.Failures > 0 {
			probing = append(probing, st.ID)
		}
	}
	busy := map[string]bool{}
	if len(probing) > 0 {
		inProbing, probingArg, err := dialect.InList(tx, "webhook_id", 1, probing)
		if err != nil {
			return nil, err
		}
		unexpired, args := `lease_expires_at > now()`, []any{probingArg}
		if sqlite {
			unexpired, args = `lease_expires_at > $2`, append(args, now)
		}
		var inFlight []string
		if err := tx.SelectContext(ctx, &inFlight, `SELECT DISTINCT webhook_id FROM webhook_deliveries
			WHERE `+inProbing+` AND lease_owner IS NOT NULL AND status = 'pending' AND `+unexpired, args...); err != nil {
			return nil, err
		}
		for _, id := range inFlight {
			busy[id] = true
		}
	}
	isProbing := map[string]bool{}
	for _, id := range probing {
		isProbing[id] = true
	}
	var chosen []claimed
	var ids []string
	for _, c := range cands {
		if !active[c.WebhookID] {
			continue
		}
		if isProbing[c.WebhookID] {
			if busy[c.WebhookID] {
				continue
			}
			busy[c.WebhookID] = true
		}
		chosen = append(chosen, c)
		ids = append(ids, c.ID)
	}
	if len(ids) == 0 {
		return nil, nil
	}
	inIDs, idsArg, err := dialect.InList(tx, "id", 3, ids)
	if err != nil {
		return nil, err
	}
	if sqlite {
		_, err = tx.ExecContext(ctx, `UPDATE webhook_deliveries SET lease_owner = $1, lease_expires_at = $2
			WHERE `+inIDs, d.cfg.Owner, now.Add(d.cfg.Lease), idsArg)
	} else {
		_, err = tx.ExecContext(ctx, `UPDATE webhook_deliveries SET lease_owner = $1, lease_expires_at = now() + $2 * interval '1 millisecond'
			WHERE `+inIDs, d.cfg.Owner, d.cfg.Lease.Milliseconds(), idsArg)
	}
	if err != nil {
		return nil, err
	}
	return chosen, tx.Commit()
}

// send makes one attempt. It does not use the Run context: an attempt that
// started is finished (bounded by the sender's timeout) and recorded, so a
// graceful shutdown never leaves a sent-but-unrecorded delivery behind.
func (d *Dispatcher) send(c claimed) {
	now := time.Now()
	h, err := Headers(c.Secret, c.EventID, now, []byte(c.Payload))
	var a Attempt
	if err != nil {
		a = Attempt{Err: fmt.Errorf("signing: %w", err)}
	} else {
		a = d.cfg.Sender.Send(context.Background(), c.URL, h, []byte(c.Payload))
	}
	d.results <- result{d: c, at: now, attempt: a}
}

// record writes outcomes in batches: one transaction for whatever results
// have arrived, so recording keeps up with many concurrent attempts.
func (d *Dispatcher) record() {
	for first := range d.results {
		batch := []result{first}
	drain:
		for len(batch) < 256 {
			select {
			case r, ok := <-d.results:
				if !ok {
					break drain
				}
				batch = append(batch, r)
			default:
				break drain
			}
		}
		for {
			err := d.recordBatch(batch)
			if err == nil {
				break
			}
			// The database is away. Keep the outcomes and try again: the
			// leases keep other dispatchers off these deliveries meanwhile.
			d.cfg.Logger.Error("webhooks: recording attempts failed; retrying", "error", err, "count", len(batch))
			time.Sleep(time.Second)
		}
		if d.cfg.OnOutcome != nil {
			for _, o := range outcomes(batch, len(d.cfg.Schedule)) {
				d.cfg.OnOutcome(o)
			}
		}
	}
}

func outcomes(batch []result, retries int) []string {
	out := make([]string, len(batch))
	for i, r := range batch {
		switch {
		case r.attempt.Success():
			out[i] = StatusDelivered
		case r.d.Attempts < retries:
			out[i] = "retry"
		default:
			out[i] = StatusFailed
		}
	}
	return out
}

type outcomeRow struct {
	ID            string     `json:"id"`
	Status        string     `json:"status"`
	Attempts      int        `json:"attempts"`
	NextAttemptAt *time.Time `json:"next_attempt_at"`
	StatusCode    *int       `json:"status_code"`
	Error         *string    `json:"error"`
	At            time.Time  `json:"at"`
	DurationMS    float64    `json:"duration_ms"`
	Response      *string    `json:"response"`
	Delivered     bool       `json:"delivered"`
}

func (d *Dispatcher) recordBatch(batch []result) error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	rows := make([]outcomeRow, 0, len(batch))
	type tally struct{ failuresAfterLastSuccess, succeeded int }
	perWebhook := map[string]*tally{}
	var order []string
	for _, r := range batch {
		o := outcomeRow{ID: r.d.ID, Attempts: r.d.Attempts + 1, At: r.at.UTC(), DurationMS: float64(r.attempt.Duration.Microseconds()) / 1000}
		if r.attempt.StatusCode != 0 {
			sc := r.attempt.StatusCode
			o.StatusCode = &sc
		}
		if r.attempt.ResponseExcerpt != "" {
			ex := r.attempt.ResponseExcerpt
			o.Response = &ex
		}
		t := perWebhook[r.d.WebhookID]
		if t == nil {
			t = &tally{}
			perWebhook[r.d.WebhookID] = t
			order = append(order, r.d.WebhookID)
		}
		if r.attempt.Success() {
			o.Status, o.Delivered = StatusDelivered, true
			t.succeeded++
			t.failuresAfterLastSuccess = 0
		} else {
			msg := failureMessage(r.attempt)
			o.Error = &msg
			// attempts so far (before this one) index the schedule: the
			// first failure waits Schedule[0], the last allowed retry is
			// attempt len(Schedule)+1.
			if r.d.Attempts < len(d.cfg.Schedule) {
				next := time.Now().UTC().Add(d.cfg.Schedule[r.d.Attempts])
				o.Status, o.NextAttemptAt = StatusPending, &next
			} else {
				o.Status = StatusFailed
			}
			t.failuresAfterLastSuccess++
		}
		rows = append(rows, o)
	}
	tx, err := d.db.BeginTxx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	now := dbNow()
	if dialect.IsSQLite(tx) {
		err = recordAttemptsSQLite(ctx, tx, rows, d.cfg.Owner, now)
	} else {
		err = recordAttemptsPostgres(ctx, tx, rows, d.cfg.Owner)
	}
	if err != nil {
		return fmt.Errorf("record attempts: %w", err)
	}
	// Built here rather than in SQL: SQLite has no format().
	reason := fmt.Sprintf("%d consecutive failed delivery attempts", d.cfg.DeactivateAfter)
	for _, id := range order {
		t := perWebhook[id]
		if _, err := tx.ExecContext(ctx, `
			UPDATE webhooks SET
				consecutive_failures = CASE WHEN $2 THEN $3 ELSE consecutive_failures + $3 END,
				active = active AND (CASE WHEN $2 THEN $3 ELSE consecutive_failures + $3 END) < $4,
				deactivated_at = CASE WHEN active AND (CASE WHEN $2 THEN $3 ELSE consecutive_failures + $3 END) >= $4 THEN $5 ELSE deactivated_at END,
				deactivation_reason = CASE WHEN active AND (CASE WHEN $2 THEN $3 ELSE consecutive_failures + $3 END) >= $4
					THEN $6 ELSE deactivation_reason END,
				updated_at = $5
			WHERE id = $1`, id, t.succeeded > 0, t.failuresAfterLastSuccess, d.cfg.DeactivateAfter, now, reason); err != nil {
			return fmt.Errorf("update webhook %s: %w", id, err)
		}
		if t.failuresAfterLastSuccess > 0 {
			if err := pauseIfInactive(ctx, tx, id, now); err != nil {
				return err
			}
		}
	}
	return tx.Commit()
}

// recordAttemptsPostgres logs the attempts and updates their deliveries in
// one statement. An outcome only changes a delivery whose lease this
// dispatcher still holds; the attempt is logged either way.
func recordAttemptsPostgres(ctx context.Context, tx *sqlx.Tx, rows []outcomeRow, owner string) error {
	if err := customPlans(ctx, tx); err != nil {
		return err
	}
	n := len(rows)
	var (
		ids, statuses   = make([]string, n), make([]string, n)
		attempts        = make([]int32, n)
		nexts           = make([]*time.Time, n)
		codes           = make([]*int32, n)
		errs, responses = make([]*string, n), make([]*string, n)
		ats             = make([]time.Time, n)
		durations       = make([]float64, n)
		delivered       = make([]bool, n)
	)
	for i, o := range rows {
		ids[i], statuses[i], attempts[i], nexts[i] = o.ID, o.Status, int32(o.Attempts), o.NextAttemptAt
		if o.StatusCode != nil {
			c := int32(*o.StatusCode)
			codes[i] = &c
		}
		errs[i], responses[i], ats[i], durations[i], delivered[i] = o.Error, o.Response, o.At, o.DurationMS, o.Delivered
	}
	// Parallel arrays, and "d.id = ANY($1)" so the deliveries are reached
	// through their primary key whatever the table's size.
	_, err := tx.ExecContext(ctx, `
		WITH o AS (
			SELECT * FROM unnest($1::text[], $2::text[], $3::int[], $4::timestamptz[], $5::int[], $6::text[],
				$7::timestamptz[], $8::double precision[], $9::text[], $10::bool[])
				AS x(id, status, attempts, next_attempt_at, status_code, error, at, duration_ms, response, delivered)
		), ins AS (
			INSERT INTO webhook_attempts (delivery_id, attempted_at, status_code, duration_ms, error, response_excerpt)
			SELECT id, at, status_code, duration_ms, error, response FROM o
		)
		UPDATE webhook_deliveries d SET
			status = o.status, attempts = o.attempts, next_attempt_at = o.next_attempt_at,
			last_status_code = o.status_code, last_error = o.error,
			delivered_at = CASE WHEN o.delivered THEN o.at ELSE d.delivered_at END,
			lease_owner = NULL, lease_expires_at = NULL, updated_at = now()
		FROM o WHERE d.id = o.id AND d.id = ANY($1) AND d.lease_owner = $11`,
		ids, statuses, attempts, nexts, codes, errs, ats, durations, responses, delivered, owner)
	return err
}

// recordAttemptsSQLite does what recordAttemptsPostgres does with two
// prepared statements run per outcome (no unnest in SQLite; in-process
// statements are cheap).
func recordAttemptsSQLite(ctx context.Context, tx *sqlx.Tx, rows []outcomeRow, owner string, now time.Time) error {
	logAttempt, err := tx.PrepareContext(ctx, `INSERT INTO webhook_attempts (delivery_id, attempted_at, status_code, duration_ms, error, response_excerpt)
		VALUES ($1, $2, $3, $4, $5, $6)`)
	if err != nil {
		return err
	}
	defer logAttempt.Close()
	update, err := tx.PrepareContext(ctx, `UPDATE webhook_deliveries SET
			status = $2, attempts = $3, next_attempt_at = $4, last_status_code = $5, last_error = $6,
			delivered_at = COALESCE($7, delivered_at),
			lease_owner = NULL, lease_expires_at = NULL, updated_at = $8
		WHERE id = $1 AND lease_owner = $9`)
	if err != nil {
		return err
	}
	defer update.Close()
	for _, o := range rows {
		if _, err := logAttempt.ExecContext(ctx, o.ID, o.At, o.StatusCode, o.DurationMS, o.Error, o.Response); err != nil {
			return err
		}
		var deliveredAt *time.Time
		if o.Delivered {
			deliveredAt = &o.At
		}
		if _, err := update.ExecContext(ctx, o.ID, o.Status, o.Attempts, o.NextAttemptAt, o.StatusCode, o.Error, deliveredAt, now, owner); err != nil {
			return err
		}
	}
	return nil
}

func failureMessage(a Attempt) string {
	if a.Err != nil {
		return a.Err.Error()
	}
	return fmt.Sprintf("endpoint answered %d %s", a.StatusCode, http.StatusText(a.StatusCode))
}

// pauseIfInactive takes the pending deliveries of a webhook that is not
// active off the schedule (next_attempt_at NULL) so dispatchers never look
// at them; reactivation puts them back (Store.Update).
func pauseIfInactive(ctx context.Context, tx *sqlx.Tx, webhookID string, now time.Time) error {
	_, err := tx.ExecContext(ctx, `UPDATE webhook_deliveries SET next_attempt_at = NULL, updated_at = $2
		WHERE webhook_id = $1 AND status = 'pending' AND lease_owner IS NULL AND next_attempt_at IS NOT NULL
		  AND EXISTS (SELECT 1 FROM webhooks w WHERE w.id = $1 AND NOT (w.active AND w.deleted_at IS NULL))`, webhookID, now)
	if err != nil {
		return fmt.Errorf("pause deliveries of %s: %w", webhookID, err)
	}
	return nil
}

// customPlans sets up a dispatcher transaction on PostgreSQL.
//
// Its statements are planned with their actual parameters: a cached
// generic plan made while the deliveries table was small would scan it (see
// projections.customPlans).
//
// And its commit does not wait for the WAL flush (synchronous_commit off).
// Claims and outcomes are the dispatcher's bookkeeping, and at-least-once
// delivery already covers losing the last few of them when PostgreSQL
// itself crashes: a lost lease or a lost "delivered" leaves the delivery
// pending, and it is sent again with the same webhook-id. Waiting for the
// flush made every claim and every record queue behind the disk, which
// halved the delivery rate while a checkpoint was writing. The fan-out,
// which creates deliveries, keeps durable commits: a delivery is never lost.
func customPlans(ctx context.Context, tx *sqlx.Tx) error {
	_, err := tx.ExecContext(ctx, `SELECT set_config('plan_cache_mode', 'force_custom_plan', true),
		set_config('synchronous_commit', 'off', true)`)
	return err
}
