package pgstore

import "time"

// PoolStats is the connection pool's state, for metrics.
type PoolStats struct {
	Total, Idle, Acquired, Constructing, Max int32
	// Acquires counts connections taken; Waits those that waited for one
	// (none idle), WaitTime their total wait.
	Acquires, Waits int64
	WaitTime        time.Duration
}

// PoolStats reports the pool's state (pgxpool.Stat).
func (s *Store) PoolStats() PoolStats {
	st := s.pool.Stat()
	return PoolStats{Total: st.TotalConns(), Idle: st.IdleConns(), Acquired: st.AcquiredConns(), Constructing: st.ConstructingConns(),
		Max: st.MaxConns(), Acquires: st.AcquireCount(), Waits: st.EmptyAcquireCount(), WaitTime: st.EmptyAcquireWaitTime()}
}
