package audit

// Crashed releases l's lock on its file as the end of its process would,
// and leaves the rest as it is: for tests that open the log again after a
// simulated crash (no Close) in the same process.
func Crashed(l *Log) {
	closeLock(l.lock)
	l.lock = nil
}
