package badgerstore

// FilterSkips is how many token-key reads the store's filter has answered
// without badger (filter.go), for the external tests.
func FilterSkips(s *Store) int64 {
	if s.filter == nil {
		return 0
	}
	return s.filter.skipped.Load()
}
