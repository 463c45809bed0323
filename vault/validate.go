package vault

import (
	"strconv"
	"unicode"
	"unicode/utf8"
)

// checkID validates subject ids, purposes and contexts: short, printable
// UTF-8. They end up in logs and audit records, so control characters
// (log injection) are refused.
func checkID(field, s string) error {
	if s == "" {
		return invalid(field, "must not be empty")
	}
	return checkText(field, s)
}

// checkText is checkID for fields that may be empty (contexts).
func checkText(field, s string) error {
	if len(s) > MaxIDBytes {
		return invalid(field, "longer than %d bytes", MaxIDBytes)
	}
	if !utf8.ValidString(s) {
		return invalid(field, "not valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) {
			return invalid(field, "contains control characters")
		}
	}
	return nil
}

func checkBatch(field string, n int) error {
	switch {
	case n == 0:
		return invalid(field, "must not be empty")
	case n > MaxBatch:
		return invalid(field, "%d items, more than the limit of %d", n, MaxBatch)
	}
	return nil
}

// item names element i of field, e.g. "tokens[3]" (built for every item
// of every call, so without fmt).
func item(field string, i int) string { return field + "[" + strconv.Itoa(i) + "]" }
