package postgres

// SetCommitFault installs a fault that runs just before a batch's insert and
// COMMIT are sent (see Store.commitFault); tests use it to cut the
// connection around COMMIT.
func SetCommitFault(s *Store, f func() (commit bool, err error)) { s.commitFault = f }

// QueuedAppends is how many appends wait for the store's writer.
func QueuedAppends(s *Store) int { return s.appends.Queued() }
