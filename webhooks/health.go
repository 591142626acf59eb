package webhooks

import "time"

// failure is a stage's current run of failures.
type failure struct {
	since time.Time
	err   error
}

// failed notes a failure of stage (see Health).
func (d *Dispatcher) failed(stage string, err error) {
	if d.cfg.OnError != nil {
		d.cfg.OnError(stage)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	f, ok := d.failing[stage]
	if !ok {
		f.since = time.Now()
	}
	f.err = err
	d.failing[stage] = f
}

// succeeded ends stage's run of failures.
func (d *Dispatcher) succeeded(stage string) {
	d.mu.Lock()
	delete(d.failing, stage)
	d.mu.Unlock()
}

// Health reports the stage that has been failing longest without a
// success in between ("claim", "record" or "renew"), since when, and its
// last error; an empty stage when everything works. A dispatcher that
// cannot claim or record sends nothing, though the server and its
// readiness otherwise look fine: the server reports it in /readyz.
func (d *Dispatcher) Health() (stage string, since time.Time, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for st, f := range d.failing {
		if stage == "" || f.since.Before(since) {
			stage, since, err = st, f.since, f.err
		}
	}
	return stage, since, err
}
