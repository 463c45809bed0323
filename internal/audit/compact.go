package audit

import (
	"net"
	"slices"
	"strings"
)

// Compact entries.
//
// The writer leaves out what an entry repeats (an audit log at 10,000
// reveals a second is hundreds of GB a day; see BENCHMARKS.md "Audit
// log"), and Expanded puts it back for readers:
//
//   - method: without the "/tokenvault.v1." every method of ours starts
//     with ("TokenVault/Detokenize"); other names are kept whole;
//   - peer: the host only (the caller's ephemeral port tells an auditor
//     nothing);
//   - items: an item's outcome when it is the entry's ("" means the
//     entry's), and their kind, when they all share one, once on the
//     entry ("kind");
//   - time: microseconds.
//
// Nothing an auditor needs is dropped. These are new spellings, not new
// meanings: entries written before keep their full form and still
// verify, and an entry's form says which it is.

// methodPrefix is what every tokenvault method name starts with.
const methodPrefix = "/tokenvault.v1."

// compact shortens e in place (its Items are the caller's: they are
// copied before they are changed).
func compact(e *Entry) {
	e.Method = strings.TrimPrefix(e.Method, methodPrefix)
	if host, _, err := net.SplitHostPort(e.Peer); err == nil {
		e.Peer = host
	}
	if len(e.Items) == 0 {
		return
	}
	e.Items = slices.Clone(e.Items)
	kind := e.Items[0].Kind
	for i := range e.Items {
		it := &e.Items[i]
		if it.Kind != kind {
			kind = ""
		}
		if it.Outcome == e.Outcome {
			it.Outcome = ""
		}
	}
	if kind != "" && len(e.Items) > 1 && e.Kind == "" {
		e.Kind = kind
		for i := range e.Items {
			e.Items[i].Kind = ""
		}
	}
}

// Expanded returns e with what the writer left out put back (see
// compact): the full method name, each item's outcome and kind. For
// reading entries; an expanded entry is not what was hashed (Line would
// seal a different line).
func (e Entry) Expanded() Entry {
	if e.Method != "" && !strings.HasPrefix(e.Method, "/") {
		e.Method = methodPrefix + e.Method
	}
	if len(e.Items) > 0 {
		e.Items = slices.Clone(e.Items)
		for i := range e.Items {
			it := &e.Items[i]
			if it.Outcome == "" {
				it.Outcome = e.Outcome
			}
			if it.Kind == "" {
				it.Kind = e.Kind
			}
		}
		if e.Kind != "" {
			e.Kind = ""
		}
	}
	return e
}
