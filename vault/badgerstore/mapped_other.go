//go:build !linux

package badgerstore

const mappedLimitSupported = false

func dontNeed(uint64, uint64) error { return errMappedUnsupported }

func residentFile() (int64, error) { return 0, errMappedUnsupported }
