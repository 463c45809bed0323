package format

import (
	"errors"
	"regexp/syntax"
	"slices"
	"sync"

	"github.com/nyaruka/phonenumbers"
)

// Checksum-valid phone tokens. libphonenumber decides whether a number is
// valid, and of which type, with per-region regular expressions over the
// national significant number (NSN). A token keeps the country code, the
// NSN's length and its last 2 digits, so the tokens of a value are the NSNs
// of that shape that the library puts in the value's region and type. This
// file builds that set as the product of the library's own expressions,
// run as automata over the digits, which gives both its exact size
// (TokenSpace) and a uniform draw from it, digit by digit, each digit with
// the probability of the numbers that continue it. Every drawn token is then
// checked with the library itself.

// phoneDescs are the number types getNumberTypeHelper tests, in its order.
func phoneDescs(m *phonenumbers.PhoneMetadata) [11]*phonenumbers.PhoneNumberDesc {
	return [...]*phonenumbers.PhoneNumberDesc{
		m.GetGeneralDesc(), m.GetPremiumRate(), m.GetTollFree(), m.GetSharedCost(),
		m.GetVoip(), m.GetPersonalNumber(), m.GetPager(), m.GetUan(), m.GetVoicemail(),
		m.GetFixedLine(), m.GetMobile(),
	}
}

var phoneTypesInOrder = [...]phonenumbers.PhoneNumberType{
	phonenumbers.PREMIUM_RATE, phonenumbers.TOLL_FREE, phonenumbers.SHARED_COST,
	phonenumbers.VOIP, phonenumbers.PERSONAL_NUMBER, phonenumbers.PAGER,
	phonenumbers.UAN, phonenumbers.VOICEMAIL,
}

// phoneType mirrors libphonenumber's getNumberTypeHelper; has(i) says
// whether the NSN matches phoneDescs(m)[i].
func phoneType(m *phonenumbers.PhoneMetadata, has func(i int) bool) phonenumbers.PhoneNumberType {
	if !has(0) {
		return phonenumbers.UNKNOWN
	}
	for i, t := range phoneTypesInOrder {
		if has(1 + i) {
			return t
		}
	}
	same := m.GetSameMobileAndFixedLinePattern()
	switch {
	case has(9) && (same || has(10)):
		return phonenumbers.FIXED_LINE_OR_MOBILE
	case has(9):
		return phonenumbers.FIXED_LINE
	case !same && has(10):
		return phonenumbers.MOBILE
	}
	return phonenumbers.UNKNOWN
}

var phoneMetadata = sync.OnceValues(func() (map[string]*phonenumbers.PhoneMetadata, error) {
	c, err := phonenumbers.MetadataCollection()
	if err != nil {
		return nil, err
	}
	m := make(map[string]*phonenumbers.PhoneMetadata, len(c.GetMetadata()))
	for _, md := range c.GetMetadata() {
		m[md.GetId()] = md
	}
	return m, nil
})

var errPhonePattern = errors.New("format: phone metadata pattern not supported")

// progCache holds the compiled expressions, keyed by pattern.
var progCache sync.Map

func compileProg(pattern string) (*syntax.Prog, error) {
	if p, ok := progCache.Load(pattern); ok {
		return p.(*syntax.Prog), nil
	}
	re, err := syntax.Parse(pattern, syntax.Perl)
	if err != nil {
		return nil, err
	}
	p, err := syntax.Compile(re.Simplify())
	if err != nil {
		return nil, err
	}
	progCache.Store(pattern, p)
	return p, nil
}

// phoneSet is the set of NSNs of one length and last 2 digits that are
// valid for one region and type. Each automaton runs one of the library's
// expressions; a prefix automaton (leading digits) accepts once it has
// matched a prefix, the others only if they match the whole NSN.
type phoneSet struct {
	progs  []*syntax.Prog
	prefix []bool
	accept func(match func(i int) bool) bool
	n      int     // NSN length
	tail   [2]byte // the kept last 2 digits
	memo   []map[string]int64
}

// nfa is the state of every automaton: the program counters waiting for a
// digit (or at Match), and for prefix automata whether they have matched.
type nfa struct {
	pcs     [][]uint32
	matched []bool
}

// newPhoneSet builds the set for the NSN nsn of country code cc, or fails
// if nsn is not valid.
func newPhoneSet(cc int, nsn string) (*phoneSet, error) {
	meta, err := phoneMetadata()
	if err != nil {
		return nil, err
	}
	pn := &phonenumbers.PhoneNumber{}
	if err := phonenumbers.ParseToNumber("+"+itoa(cc)+nsn, "", pn); err != nil {
		return nil, err
	}
	region, typ := phonenumbers.GetRegionCodeForNumber(pn), phonenumbers.GetNumberType(pn)
	regions := phonenumbers.GetRegionCodesForCountryCode(cc)
	i := slices.Index(regions, region)
	if i < 0 || typ == phonenumbers.UNKNOWN {
		return nil, errPhonePattern
	}
	s := &phoneSet{n: len(nsn), tail: [2]byte{nsn[len(nsn)-2], nsn[len(nsn)-1]}}
	// add returns the index of an automaton for pattern, or -1 for one that
	// can never match (no pattern, or a length the type does not have).
	add := func(pattern string, prefix bool) (int, error) {
		if pattern == "" {
			return -1, nil
		}
		p, err := compileProg(pattern)
		if err != nil {
			return 0, err
		}
		s.progs = append(s.progs, p)
		s.prefix = append(s.prefix, prefix)
		return len(s.progs) - 1, nil
	}
	descs := func(m *phonenumbers.PhoneMetadata) ([11]int, error) {
		var idx [11]int
		for j, d := range phoneDescs(m) {
			idx[j] = -1
			if l := d.GetPossibleLength(); len(l) > 0 && !slices.Contains(l, int32(s.n)) {
				continue
			}
			var err error
			if idx[j], err = add(d.GetNationalNumberPattern(), false); err != nil {
				return idx, err
			}
		}
		return idx, nil
	}
	// The regions before the value's must not claim the NSN
	// (getRegionCodeForNumberFromRegionList): by leading digits if they
	// have them, else by being a valid number of theirs.
	type claim struct {
		meta    *phonenumbers.PhoneMetadata
		leading int
		descs   [11]int
	}
	var claims []claim
	for _, r := range regions[:i+1] {
		m := meta[r]
		if m == nil {
			return nil, errPhonePattern
		}
		c := claim{meta: m, leading: -1}
		if ld := m.GetLeadingDigits(); ld != "" && len(regions) > 1 {
			if c.leading, err = add(ld, true); err != nil {
				return nil, err
			}
		}
		if c.leading < 0 || r == region {
			if c.descs, err = descs(m); err != nil {
				return nil, err
			}
		}
		claims = append(claims, c)
	}
	s.accept = func(match func(i int) bool) bool {
		for k, c := range claims {
			has := func(j int) bool { return c.descs[j] >= 0 && match(c.descs[j]) }
			var claimed bool
			switch {
			case len(regions) == 1:
				claimed = true
			case c.leading >= 0:
				claimed = match(c.leading)
			default:
				claimed = phoneType(c.meta, has) != phonenumbers.UNKNOWN
			}
			if k < len(claims)-1 {
				if claimed {
					return false
				}
				continue
			}
			return claimed && phoneType(c.meta, has) == typ
		}
		return false
	}
	s.memo = make([]map[string]int64, s.n+1)
	for j := range s.memo {
		s.memo[j] = map[string]int64{}
	}
	return s, nil
}

// closure adds to set the counter pc and everything it reaches without
// reading a digit.
func closure(p *syntax.Prog, pc uint32, set []uint32) ([]uint32, error) {
	if slices.Contains(set, pc) {
		return set, nil
	}
	in := &p.Inst[pc]
	switch in.Op {
	case syntax.InstAlt, syntax.InstAltMatch:
		set = append(set, pc) // marks it visited; dropped by step
		var err error
		if set, err = closure(p, in.Out, set); err != nil {
			return nil, err
		}
		return closure(p, in.Arg, set)
	case syntax.InstCapture, syntax.InstNop:
		return closure(p, in.Out, append(set, pc))
	case syntax.InstMatch, syntax.InstRune, syntax.InstRune1, syntax.InstRuneAny, syntax.InstRuneAnyNotNL:
		return append(set, pc), nil
	case syntax.InstFail:
		return set, nil
	}
	return nil, errPhonePattern // anchors and word boundaries: not in the metadata
}

// waiting keeps the counters of set that read a digit or match, sorted, so
// that equal states have equal keys.
func waiting(p *syntax.Prog, set []uint32) []uint32 {
	set = slices.DeleteFunc(set, func(pc uint32) bool {
		switch p.Inst[pc].Op {
		case syntax.InstAlt, syntax.InstAltMatch, syntax.InstCapture, syntax.InstNop:
			return true
		}
		return false
	})
	slices.Sort(set)
	return set
}

func (s *phoneSet) start() (nfa, error) {
	st := nfa{pcs: make([][]uint32, len(s.progs)), matched: make([]bool, len(s.progs))}
	for i, p := range s.progs {
		set, err := closure(p, uint32(p.Start), nil)
		if err != nil {
			return st, err
		}
		st.pcs[i] = waiting(p, set)
		s.settle(&st, i)
	}
	return st, nil
}

// settle records a prefix automaton's match; it then needs no counters.
func (s *phoneSet) settle(st *nfa, i int) {
	if !s.prefix[i] {
		return
	}
	for _, pc := range st.pcs[i] {
		if s.progs[i].Inst[pc].Op == syntax.InstMatch {
			st.matched[i], st.pcs[i] = true, nil
			return
		}
	}
}

func (s *phoneSet) step(st nfa, d byte) (nfa, error) {
	next := nfa{pcs: make([][]uint32, len(s.progs)), matched: slices.Clone(st.matched)}
	for i, p := range s.progs {
		var set []uint32
		for _, pc := range st.pcs[i] {
			if in := &p.Inst[pc]; in.Op != syntax.InstMatch && in.MatchRune(rune(d)) {
				var err error
				if set, err = closure(p, in.Out, set); err != nil {
					return next, err
				}
			}
		}
		next.pcs[i] = waiting(p, set)
		s.settle(&next, i)
	}
	return next, nil
}

func (st nfa) key() string {
	b := make([]byte, 0, 64)
	for i, set := range st.pcs {
		if st.matched[i] {
			b = append(b, 'm')
		}
		for _, pc := range set {
			b = append(b, byte(pc), byte(pc>>8), byte(pc>>16))
		}
		b = append(b, '|')
	}
	return string(b)
}

// digitsAt returns the digits position j of the NSN can take.
func (s *phoneSet) digitsAt(j int) []byte {
	if j >= s.n-2 {
		return []byte{s.tail[j-(s.n-2)]}
	}
	return []byte("0123456789")
}

// count returns how many ways the NSN can go on from position j in state
// st and be in the set.
func (s *phoneSet) count(j int, st nfa) (int64, error) {
	if j == s.n {
		ok := s.accept(func(i int) bool {
			return st.matched[i] || !s.prefix[i] && slices.ContainsFunc(st.pcs[i], func(pc uint32) bool {
				return s.progs[i].Inst[pc].Op == syntax.InstMatch
			})
		})
		if ok {
			return 1, nil
		}
		return 0, nil
	}
	k := st.key()
	if c, ok := s.memo[j][k]; ok {
		return c, nil
	}
	var total int64
	for _, d := range s.digitsAt(j) {
		next, err := s.step(st, d)
		if err != nil {
			return 0, err
		}
		c, err := s.count(j+1, next)
		if err != nil {
			return 0, err
		}
		total += c
	}
	s.memo[j][k] = total
	return total, nil
}

// contains reports whether nsn is in the set.
func (s *phoneSet) contains(nsn string) (bool, error) {
	st, err := s.start()
	for j := 0; j < len(nsn) && err == nil; j++ {
		if j >= s.n-2 && nsn[j] != s.tail[j-(s.n-2)] {
			return false, nil
		}
		st, err = s.step(st, nsn[j])
	}
	if err != nil || len(nsn) != s.n {
		return false, err
	}
	c, err := s.count(s.n, st)
	return c == 1, err
}

// size returns the number of NSNs in the set.
func (s *phoneSet) size() (int64, error) {
	st, err := s.start()
	if err != nil {
		return 0, err
	}
	return s.count(0, st)
}

// draw returns a uniform NSN of the set, choosing each digit with the
// probability of the NSNs that continue it.
func (s *phoneSet) draw(g *rng) (string, error) {
	st, err := s.start()
	if err != nil {
		return "", err
	}
	total, err := s.count(0, st)
	if err != nil || total == 0 {
		return "", cmpOr(err, errNoValidPhone)
	}
	b := make([]byte, 0, s.n)
	for j := range s.n {
		r := g.int64n(total)
		for _, d := range s.digitsAt(j) {
			next, err := s.step(st, d)
			if err != nil {
				return "", err
			}
			c, err := s.count(j+1, next)
			if err != nil {
				return "", err
			}
			if r < c {
				b, st, total = append(b, d), next, c
				break
			}
			r -= c
		}
	}
	return string(b), g.err
}

func itoa(n int) string {
	if n < 10 {
		return string('0' + byte(n))
	}
	return itoa(n/10) + string('0'+byte(n%10))
}
