package sqlite

// SetCommitFault installs a fault that runs just before COMMIT (see
// Store.commitFault); tests use it to make a commit's outcome unknown.
func SetCommitFault(s *Store, f func() (commit bool, err error)) { s.commitFault = f }

// QueuedAppends is how many appends wait for the store's writer.
func QueuedAppends(s *Store) int { return s.appends.Queued() }
