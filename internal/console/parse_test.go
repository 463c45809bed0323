package console_test

import (
	"regexp"
	"testing"
)

var (
	tokenRE = regexp.MustCompile(`name="token" value="([^"]+)"`)
	nextRE  = regexp.MustCompile(`name="after" value="([^"]+)"`)
)

// tokensOnPage lists the tokens of a subject page's rows (their reveal
// forms, or rectify forms), once each.
func tokensOnPage(p page) []string {
	var out []string
	seen := map[string]bool{}
	for _, m := range tokenRE.FindAllStringSubmatch(p.body, -1) {
		if !seen[m[1]] {
			seen[m[1]] = true
			out = append(out, m[1])
		}
	}
	return out
}

func tokenOnPage(t *testing.T, p page) string {
	t.Helper()
	toks := tokensOnPage(p)
	if len(toks) == 0 {
		t.Fatalf("no token on the page (%d): %.500s", p.code, p.body)
	}
	return toks[0]
}

func nextOnPage(p page) string {
	if m := nextRE.FindStringSubmatch(p.body); m != nil {
		return m[1]
	}
	return ""
}
