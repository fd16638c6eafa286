// Package promcheck finds the metric names a PromQL expression reads, so a
// test can hold every alert rule and dashboard panel to the metrics the
// services actually register: a renamed metric makes a silent alert and an
// empty panel, which no query error would show.
package promcheck

import (
	"regexp"
	"sort"
	"strings"
)

var (
	stringRE   = regexp.MustCompile(`"(\\.|[^"\\])*"|'(\\.|[^'\\])*'|` + "`[^`]*`")
	bracesRE   = regexp.MustCompile(`\{[^{}]*\}`)
	rangeRE    = regexp.MustCompile(`\[[^\[\]]*\]`)
	clauseRE   = regexp.MustCompile(`\b(by|without|on|ignoring|group_left|group_right)\s*\([^()]*\)`)
	variableRE = regexp.MustCompile(`\$\{?\w+\}?`)
	identRE    = regexp.MustCompile(`[a-zA-Z_:][a-zA-Z0-9_:]*`)
	keywords   = map[string]bool{"by": true, "without": true, "on": true, "ignoring": true, "group_left": true,
		"group_right": true, "bool": true, "and": true, "or": true, "unless": true, "offset": true, "atan2": true, "inf": true, "nan": true}
)

// MetricNames returns the sorted metric names expr selects. Functions,
// aggregations, keywords, label names and Grafana variables are not names.
func MetricNames(expr string) []string {
	s := stringRE.ReplaceAllString(expr, `""`)
	s = variableRE.ReplaceAllString(s, "")
	for prev := ""; prev != s; {
		prev = s
		s = bracesRE.ReplaceAllString(s, "")
	}
	s = rangeRE.ReplaceAllString(s, "")
	s = clauseRE.ReplaceAllString(s, "")
	seen := map[string]bool{}
	for _, loc := range identRE.FindAllStringIndex(s, -1) {
		name := s[loc[0]:loc[1]]
		if loc[0] > 0 && (isDigit(s[loc[0]-1]) || s[loc[0]-1] == '.') {
			continue // the exponent or suffix of a number: 1e3, 0.5
		}
		rest := strings.TrimLeft(s[loc[1]:], " \t\n")
		if strings.HasPrefix(rest, "(") || keywords[strings.ToLower(name)] {
			continue
		}
		seen[name] = true
	}
	out := make([]string, 0, len(seen))
	for n := range seen {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

func isDigit(b byte) bool { return b >= '0' && b <= '9' }

// BaseName maps a series name of a histogram or summary to the metric that
// is registered: x_bucket, x_sum and x_count come from x.
func BaseName(name string) []string {
	out := []string{name}
	for _, suf := range []string{"_bucket", "_sum", "_count"} {
		if b, ok := strings.CutSuffix(name, suf); ok {
			out = append(out, b)
		}
	}
	return out
}
