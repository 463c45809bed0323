package app

import "context"

// shredHolds crypto-shreds held data whose hold has ended, as often as
// expired tokens are purged (rights.purge_interval), and once at start:
// a shred a crash or a stop interrupted is resumed then (the schedule is
// durable; a shred that committed left a pending purge, which vault.New
// finishes).
func (a *App) shredHolds(ctx context.Context) {
	if len(a.cfg.Holds) == 0 {
		return
	}
	every(ctx, a.cfg.Rights.PurgeInterval, true, func() {
		// On a shared store, one replica at a time (store.go): a second
		// shred of a hold would only find it gone, but need not run.
		a.once(ctx, "hold-shred", func(ctx context.Context) {
			n, err := a.vault.ShredDueHolds(ctx)
			switch {
			case ctx.Err() != nil:
			case err != nil:
				a.cfg.Logger.Error("shredding held data at the end of its hold", "err", err)
			case n > 0:
				a.cfg.Logger.Info("shredded held data at the end of its hold", "holds", n)
			}
		})
	})
}
