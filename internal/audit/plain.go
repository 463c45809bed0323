package audit

import "strconv"

// The canonical form of an entry is what encoding/json writes for it
// (with HTML escaping off), and lines written by every earlier version
// were encoded that way. Reflection-driven encoding was most of the cost
// of sealing an entry, paid for every reveal inside the writer's loop, so
// entries whose strings need no escaping at all — in practice every entry:
// hex hashes, RFC 3339 times, gRPC method and code names, ASCII caller
// names and purposes — are written by appendPlain instead, which writes
// the same bytes: the members in the struct's order, the same omitempty
// rules, strings verbatim between quotes. Anything else (a quote, a
// backslash, a control character, non-ASCII or invalid UTF-8) goes
// through encoding/json as before, so its escaping rules are never
// re-implemented here. TestPlainMatchesJSON and FuzzPlainMatchesJSON
// compare the two.

// plainString reports whether JSON writes s verbatim between quotes:
// printable ASCII other than '"' and '\\' (with HTML escaping off, <, >
// and & are written as they are).
func plainString(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c > 0x7e || c == '"' || c == '\\' {
			return false
		}
	}
	return true
}

// plain reports whether every string of e is plainString.
func (e *Entry) plain() bool {
	for _, s := range [...]string{e.Time, e.Type, e.Replica, e.Caller, e.Auth, e.Peer, e.Op, e.Method,
		e.Purpose, e.OriginCaller, e.OriginReplica, e.Subject, e.SubjectHash, e.Outcome, e.Reason,
		e.Kind, e.Since, e.File, e.KeyID, e.Sig, e.Prev} {
		if !plainString(s) {
			return false
		}
	}
	for _, s := range e.Recipients {
		if !plainString(s) {
			return false
		}
	}
	for i := range e.Items {
		it := &e.Items[i]
		if !plainString(it.Token) || !plainString(it.Kind) || !plainString(it.Subject) ||
			!plainString(it.SubjectHash) || !plainString(it.Context) || !plainString(it.Outcome) {
			return false
		}
	}
	return true
}

// appendPlain appends the canonical JSON of a plain entry (see plain) to
// b: member for member what encoding/json writes for Entry.
func (e *Entry) appendPlain(b []byte) []byte {
	b = append(b, `{"seq":`...)
	b = strconv.AppendUint(b, e.Seq, 10)
	b = appendMember(b, `,"time":"`, e.Time)
	b = appendMember(b, `,"type":"`, e.Type)
	b = appendOmit(b, `,"replica":"`, e.Replica)
	b = appendOmit(b, `,"caller":"`, e.Caller)
	b = appendOmit(b, `,"auth":"`, e.Auth)
	b = appendOmit(b, `,"peer":"`, e.Peer)
	b = appendOmit(b, `,"op":"`, e.Op)
	b = appendOmit(b, `,"method":"`, e.Method)
	b = appendOmit(b, `,"purpose":"`, e.Purpose)
	b = appendOmit(b, `,"origin_caller":"`, e.OriginCaller)
	b = appendOmit(b, `,"origin_replica":"`, e.OriginReplica)
	b = appendOmit(b, `,"subject":"`, e.Subject)
	b = appendOmit(b, `,"subject_hash":"`, e.SubjectHash)
	b = appendOmit(b, `,"outcome":"`, e.Outcome)
	b = appendOmit(b, `,"reason":"`, e.Reason)
	b = appendOmit(b, `,"kind":"`, e.Kind)
	if len(e.Items) > 0 {
		b = append(b, `,"items":[`...)
		for i := range e.Items {
			if i > 0 {
				b = append(b, ',')
			}
			b = e.Items[i].appendPlain(b)
		}
		b = append(b, ']')
	}
	if e.ItemsOmitted != 0 {
		b = append(b, `,"items_omitted":`...)
		b = strconv.AppendInt(b, int64(e.ItemsOmitted), 10)
	}
	if e.Count != 0 {
		b = append(b, `,"count":`...)
		b = strconv.AppendUint(b, e.Count, 10)
	}
	b = appendOmit(b, `,"since":"`, e.Since)
	if len(e.Recipients) > 0 {
		b = append(b, `,"recipients":[`...)
		for i, r := range e.Recipients {
			if i > 0 {
				b = append(b, ',')
			}
			b = append(append(append(b, '"'), r...), '"')
		}
		b = append(b, ']')
	}
	b = appendOmit(b, `,"file":"`, e.File)
	if e.CheckpointSeq != 0 {
		b = append(b, `,"cp_seq":`...)
		b = strconv.AppendUint(b, e.CheckpointSeq, 10)
	}
	b = appendOmit(b, `,"key_id":"`, e.KeyID)
	b = appendOmit(b, `,"sig":"`, e.Sig)
	b = appendMember(b, `,"prev":"`, e.Prev)
	return append(b, '}')
}

// appendPlain appends the JSON of a plain item.
func (it *Item) appendPlain(b []byte) []byte {
	b = append(b, '{')
	n := len(b)
	for _, m := range [...]struct{ name, s string }{{`"token":"`, it.Token}, {`"kind":"`, it.Kind},
		{`"subject":"`, it.Subject}, {`"subject_hash":"`, it.SubjectHash}, {`"context":"`, it.Context},
		{`"outcome":"`, it.Outcome}} {
		if m.s == "" {
			continue
		}
		if len(b) > n {
			b = append(b, ',')
		}
		b = appendMember(b, m.name, m.s)
	}
	return append(b, '}')
}

// appendMember appends name (which ends with the value's opening quote),
// s and the closing quote.
func appendMember(b []byte, name, s string) []byte {
	return append(append(append(b, name...), s...), '"')
}

// appendOmit is appendMember for an omitempty member.
func appendOmit(b []byte, name, s string) []byte {
	if s == "" {
		return b
	}
	return appendMember(b, name, s)
}
