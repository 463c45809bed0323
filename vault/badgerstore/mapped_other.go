//go:build !linux

package badgerstore

const mappedLimitSupported = false

func dontNeed(uint64, uint64) error { return errMappedUnsupported }
