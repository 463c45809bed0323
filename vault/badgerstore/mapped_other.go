//go:build !linux

package badgerstore

const (
	mappedLimitSupported = false
	advisePageOut        = 0
	adviseDontNeed       = 0
)

func madvise(uint64, uint64, int) (bool, error) { return false, errMappedUnsupported }

func residentFile() (int64, error) { return 0, errMappedUnsupported }
