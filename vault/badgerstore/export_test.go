package badgerstore

// FilterSkips is how many token-key reads the store's token filter has
// answered without badger (filter.go), for the external tests.
func FilterSkips(s *Store) int64 {
	if s.filter == nil {
		return 0
	}
	return s.filter.skipped.Load()
}

// LookupFilterSkips is the same for the lookup filter's lookup-key reads.
func LookupFilterSkips(s *Store) int64 {
	if s.lookups == nil {
		return 0
	}
	return s.lookups.skipped.Load()
}
