package console_test

import (
	"regexp"
	"strings"
	"testing"
)

var (
	tokenRE = regexp.MustCompile(`name="token" value="([^"]+)"`)
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

func hasNextPage(p page) bool { return strings.Contains(p.body, `id="next-page"`) }
