package vault

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// The rules for purposes, subject ids and contexts (README, "API"):
//
//   - A purpose is free text that says why a value is revealed: white
//     space at either end is trimmed ([Purpose]) and what is left must not
//     be empty. The guard checks the policy and writes the audit log with
//     the trimmed purpose, the one the vault checks.
//   - A subject id and a context are never trimmed: "alice" and " alice"
//     are two subjects (erasing one would leave the other), and a context
//     is a blob's associated data. The calls that create data under them
//     (Tokenize, Encrypt) refuse a subject id that is blank or has white
//     space at either end, and a context that does (the empty context stays
//     allowed). The calls that name what exists (reveals, export,
//     restriction, erasure) take them byte for byte, so data stored under
//     such an id before the rule stays exportable and erasable.
//
// Every check names the field and never repeats its value.

// blank reports the runes trimmed from purposes and refused at the ends of
// new subject ids and contexts: white space, and the invisible formatting
// characters (category Cf: zero-width space, byte order mark, …), which
// look like nothing in a log just as much.
func blank(r rune) bool { return unicode.IsSpace(r) || unicode.Is(unicode.Cf, r) }

// Purpose returns purpose as the vault uses it — without white space at
// either end — or a *FieldError (ErrInvalidArgument) naming "purpose" if
// it is malformed or nothing is left: a reveal must say why, and white
// space says nothing. Detokenize and Decrypt apply it; the gRPC guard
// applies it before asking the policy, so both see the same purpose.
func Purpose(purpose string) (string, error) {
	if err := checkText("purpose", purpose); err != nil {
		return "", err
	}
	if p := strings.TrimFunc(purpose, blank); p != "" {
		return p, nil
	}
	return "", invalid("purpose", "required: every reveal must say why the value is needed (white space alone says nothing)")
}

// checkID validates the subject id of a call that names an existing
// subject: short, printable UTF-8, not empty. Ids end up in logs and audit
// records, so control characters (log injection) are refused.
func checkID(field, s string) error {
	if s == "" {
		return invalid(field, "must not be empty")
	}
	return checkText(field, s)
}

// checkNewSubject validates the subject id of a call that stores data
// under it: checkID, and neither blank nor with white space at either end.
func checkNewSubject(s string) error {
	if err := checkID("subject_id", s); err != nil {
		return err
	}
	return checkEdges("subject_id", s)
}

// checkNewContext validates the context of a blob being made: checkText,
// and, unless empty, neither blank nor with white space at either end.
func checkNewContext(field, s string) error {
	if err := checkText(field, s); err != nil {
		return err
	}
	return checkEdges(field, s)
}

// checkEdges refuses s (valid UTF-8) if it begins or ends with a blank
// rune; the empty string passes.
func checkEdges(field, s string) error {
	first, _ := utf8.DecodeRuneInString(s)
	last, _ := utf8.DecodeLastRuneInString(s)
	switch {
	case s == "" || !blank(first) && !blank(last):
		return nil
	case strings.TrimFunc(s, blank) == "":
		return invalid(field, "must not be blank (only white space or invisible characters)")
	default:
		return invalid(field, "must not begin or end with white space or invisible characters (it is not trimmed)")
	}
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
