package bzlmod

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrNoUseRepo is returned when MODULE.bazel has no use_repo call for the
// requested extension.
var ErrNoUseRepo = errors.New("no use_repo call for extension")

// ErrNoBazelDep is returned when MODULE.bazel has no bazel_dep with the
// requested name.
var ErrNoBazelDep = errors.New("no bazel_dep with that name")

// call is one top-level function call of a MODULE.bazel file: its name, its
// positional identifier and string arguments, its keyword string arguments,
// and where its text lies in the file.
type call struct {
	recv       string // "go_sdk" in go_sdk.download(...)
	name       string
	idents     []string // positional identifiers (use_repo's extension proxy)
	strings    []string // positional string literals
	kwargs     map[string]string
	keywords   []string // every keyword argument, whatever its value
	start, end int
}

// UseRepos returns the repositories named by the use_repo calls for the
// extension proxy called extension (for example "go_deps"), in file order.
func UseRepos(moduleBazel []byte, extension string) ([]string, error) {
	calls, err := parseCalls(moduleBazel)
	if err != nil {
		return nil, err
	}
	var repos []string
	found := false
	for _, c := range calls {
		if c.name == "use_repo" && len(c.idents) > 0 && c.idents[0] == extension {
			found = true
			repos = append(repos, c.strings...)
		}
	}
	if !found {
		return nil, fmt.Errorf("%w %q", ErrNoUseRepo, extension)
	}
	return repos, nil
}

// SetUseRepos rewrites the one use_repo call for extension to name exactly
// repos, one per line in buildifier's layout. Comments inside the old call
// are dropped: the list is generated from go.mod.
func SetUseRepos(moduleBazel []byte, extension string, repos []string) ([]byte, error) {
	calls, err := parseCalls(moduleBazel)
	if err != nil {
		return nil, err
	}
	var target *call
	for i, c := range calls {
		if c.name == "use_repo" && len(c.idents) > 0 && c.idents[0] == extension {
			if target != nil {
				return nil, fmt.Errorf("rewriting use_repo: more than one call for extension %q", extension)
			}
			target = &calls[i]
		}
	}
	if target == nil {
		return nil, fmt.Errorf("%w %q", ErrNoUseRepo, extension)
	}
	var b bytes.Buffer
	b.Write(moduleBazel[:target.start])
	fmt.Fprintf(&b, "use_repo(\n    %s,\n", extension)
	for _, r := range repos {
		fmt.Fprintf(&b, "    %s,\n", strconv.Quote(r))
	}
	b.WriteString(")")
	b.Write(moduleBazel[target.end:])
	return b.Bytes(), nil
}

// BazelDepVersion returns the version of the bazel_dep called name.
func BazelDepVersion(moduleBazel []byte, name string) (string, error) {
	calls, err := parseCalls(moduleBazel)
	if err != nil {
		return "", err
	}
	for _, c := range calls {
		if c.name == "bazel_dep" && c.kwargs["name"] == name {
			return c.kwargs["version"], nil
		}
	}
	return "", fmt.Errorf("%w %q", ErrNoBazelDep, name)
}

// parseCalls scans the top-level calls of a MODULE.bazel file. MODULE.bazel
// is a restricted Starlark dialect (no loads, no control flow at top level),
// so calls, assignments, comments and literals are all it has to skip over;
// arguments that are not identifiers or plain string literals (lists,
// numbers, attribute calls) are skipped, not interpreted.
func parseCalls(src []byte) ([]call, error) {
	s := &scanner{src: src}
	var calls []call
	for {
		s.skipSpaceAndComments()
		if s.pos >= len(src) {
			return calls, nil
		}
		start := s.pos
		if c := src[s.pos]; c == '"' || c == '\'' {
			// A docstring or other bare string statement.
			if _, err := s.str(); err != nil {
				return nil, err
			}
			continue
		}
		name := s.ident()
		if name == "" {
			return nil, s.errorf("expected a call or assignment")
		}
		s.skipSpaceAndComments()
		// `x = use_extension(...)` or `x.tag(...)`: skip to the call.
		recv := ""
		for s.pos < len(src) && (src[s.pos] == '=' || src[s.pos] == '.') {
			if src[s.pos] == '.' {
				recv = name
			}
			s.pos++
			s.skipSpaceAndComments()
			if n := s.ident(); n != "" {
				name = n
			}
			s.skipSpaceAndComments()
		}
		if s.pos >= len(src) || src[s.pos] != '(' {
			return nil, s.errorf("expected '(' after %q", name)
		}
		c := call{recv: recv, name: name, kwargs: map[string]string{}, start: start}
		if err := s.args(&c); err != nil {
			return nil, err
		}
		c.end = s.pos
		calls = append(calls, c)
	}
}

type scanner struct {
	src []byte
	pos int
}

func (s *scanner) errorf(format string, args ...any) error {
	line := 1 + bytes.Count(s.src[:min(s.pos, len(s.src))], []byte("\n"))
	return fmt.Errorf("MODULE.bazel:%d: "+format, append([]any{line}, args...)...)
}

func (s *scanner) skipSpaceAndComments() {
	for s.pos < len(s.src) {
		switch c := s.src[s.pos]; {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			s.pos++
		case c == '#':
			for s.pos < len(s.src) && s.src[s.pos] != '\n' {
				s.pos++
			}
		default:
			return
		}
	}
}

func isIdentByte(c byte, first bool) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (!first && c >= '0' && c <= '9')
}

func (s *scanner) ident() string {
	start := s.pos
	for s.pos < len(s.src) && isIdentByte(s.src[s.pos], s.pos == start) {
		s.pos++
	}
	return string(s.src[start:s.pos])
}

// str scans a string literal at s.pos, including triple-quoted ones.
func (s *scanner) str() (string, error) {
	q := s.src[s.pos]
	delim := []byte{q}
	if bytes.HasPrefix(s.src[s.pos:], []byte{q, q, q}) {
		delim = []byte{q, q, q}
	}
	start := s.pos
	s.pos += len(delim)
	for s.pos < len(s.src) {
		switch {
		case s.src[s.pos] == '\\':
			if s.pos+1 >= len(s.src) {
				return "", s.errorf("unterminated string literal")
			}
			s.pos += 2
		case bytes.HasPrefix(s.src[s.pos:], delim):
			s.pos += len(delim)
			lit := string(s.src[start:s.pos])
			if len(delim) == 3 {
				return lit[3 : len(lit)-3], nil
			}
			if q == '\'' {
				lit = `"` + strings.ReplaceAll(lit[1:len(lit)-1], `"`, `\"`) + `"`
			}
			v, err := strconv.Unquote(lit)
			if err != nil {
				return "", s.errorf("bad string literal %s", lit)
			}
			return v, nil
		case len(delim) == 1 && s.src[s.pos] == '\n':
			return "", s.errorf("newline in string literal")
		default:
			s.pos++
		}
	}
	return "", s.errorf("unterminated string literal")
}

// args scans a parenthesised argument list starting at '(' and records the
// simple arguments of c.
func (s *scanner) args(c *call) error {
	s.pos++ // '('
	for {
		s.skipSpaceAndComments()
		if s.pos >= len(s.src) {
			return s.errorf("unterminated call to %s", c.name)
		}
		switch ch := s.src[s.pos]; {
		case ch == ')':
			s.pos++
			return nil
		case ch == ',':
			s.pos++
		case ch == '"' || ch == '\'':
			v, err := s.str()
			if err != nil {
				return err
			}
			c.strings = append(c.strings, v)
		case isIdentByte(ch, true):
			id := s.ident()
			s.skipSpaceAndComments()
			if s.pos < len(s.src) && s.src[s.pos] == '=' {
				c.keywords = append(c.keywords, id)
				s.pos++
				s.skipSpaceAndComments()
				if s.pos < len(s.src) && (s.src[s.pos] == '"' || s.src[s.pos] == '\'') {
					v, err := s.str()
					if err != nil {
						return err
					}
					c.kwargs[id] = v
				} else if err := s.skipValue(); err != nil {
					return err
				}
				continue
			}
			c.idents = append(c.idents, id)
		default:
			if err := s.skipValue(); err != nil {
				return err
			}
		}
	}
}

// skipValue skips one argument value that is not recorded: a bracketed
// expression, a number, a boolean, an attribute access or a call.
func (s *scanner) skipValue() error {
	depth := 0
	for s.pos < len(s.src) {
		switch ch := s.src[s.pos]; {
		case ch == '"' || ch == '\'':
			if _, err := s.str(); err != nil {
				return err
			}
			continue
		case ch == '#':
			s.skipSpaceAndComments()
			continue
		case ch == '(' || ch == '[' || ch == '{':
			depth++
		case ch == ')' || ch == ']' || ch == '}':
			if depth == 0 {
				if ch != ')' {
					return s.errorf("unexpected %q", ch)
				}
				return nil
			}
			depth--
		case ch == ',' && depth == 0:
			return nil
		}
		s.pos++
	}
	return s.errorf("unterminated argument")
}

// GoSDKVersion returns the version of the Go SDK MODULE.bazel downloads
// with go_sdk.download.
func GoSDKVersion(moduleBazel []byte) (string, error) {
	calls, err := parseCalls(moduleBazel)
	if err != nil {
		return "", err
	}
	for _, c := range calls {
		if c.recv == "go_sdk" && c.name == "download" && c.kwargs["version"] != "" {
			return c.kwargs["version"], nil
		}
	}
	return "", ErrNoGoSDK
}

// ErrNoGoSDK is returned when MODULE.bazel downloads no Go SDK.
var ErrNoGoSDK = errors.New("no go_sdk.download with a version")

// Call is one top-level call of a MODULE.bazel file, as far as a schema
// check needs it.
type Call struct {
	Receiver string   // "go_sdk" in go_sdk.download(...); "" for plain calls
	Name     string   // "download"
	Keywords []string // keyword argument names, in order
	Line     int
}

// Calls returns the top-level calls of a MODULE.bazel file in order.
func Calls(moduleBazel []byte) ([]Call, error) {
	calls, err := parseCalls(moduleBazel)
	if err != nil {
		return nil, err
	}
	out := make([]Call, len(calls))
	for i, c := range calls {
		out[i] = Call{
			Receiver: c.recv,
			Name:     c.name,
			Keywords: c.keywords,
			Line:     1 + bytes.Count(moduleBazel[:c.start], []byte("\n")),
		}
	}
	return out, nil
}
