package protolimits

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
)

// Unit is what a size limit counts.
type Unit int

const (
	// Bytes counts the bytes of a bytes field.
	Bytes Unit = iota + 1
	// Characters counts the Unicode code points of a string field.
	Characters
)

func (u Unit) String() string {
	switch u {
	case Bytes:
		return "bytes"
	case Characters:
		return "characters"
	}
	return "Unit(" + strconv.Itoa(int(u)) + ")"
}

// Limit is one parsed field annotation. A singular string or bytes field has a Size; a repeated
// field has Items and, when its elements are strings or bytes, a Size for each element.
type Limit struct {
	// Items is the maximum number of elements of a repeated field; 0 for singular fields.
	Items int
	// Size is the maximum (or, with Exact, the required) size of a string or bytes value, in
	// Unit; 0 when only Items is limited.
	Size int
	// Exact means a present value must be exactly Size long.
	Exact bool
	// Unit is what Size counts.
	Unit Unit
}

// String renders the limit in the annotation grammar, e.g. "Max: 100 items, each max 16384 bytes."
func (l Limit) String() string {
	size := func(word string) string { return fmt.Sprintf("%s %d %s", word, l.Size, l.Unit) }
	sizeWord := "max"
	if l.Exact {
		sizeWord = "exactly"
	}
	switch {
	case l.Items > 0 && l.Size > 0:
		return fmt.Sprintf("Max: %d items, each %s.", l.Items, size(sizeWord))
	case l.Items > 0:
		return fmt.Sprintf("Max: %d items.", l.Items)
	case l.Exact:
		return size("Exactly:") + "."
	}
	return size("Max:") + "."
}

// ErrBadAnnotation reports a comment whose limit annotation does not follow the grammar.
var ErrBadAnnotation = errors.New("malformed limit annotation")

// annotation matches a limit annotation ending a comment (comment lines joined by spaces).
var annotation = regexp.MustCompile(`(?:^|\s)((?:Max|Exactly): [^:]*?\.)$`)

// scalar, items and eachItem are the three annotation forms; a number is a positive decimal
// without leading zeros.
var (
	scalar   = regexp.MustCompile(`^(Max|Exactly): ([1-9][0-9]*) (bytes|KiB|MiB|characters)\.$`)
	items    = regexp.MustCompile(`^Max: ([1-9][0-9]*) items\.$`)
	eachItem = regexp.MustCompile(`^Max: ([1-9][0-9]*) items, each (max|exactly) ([1-9][0-9]*) (bytes|KiB|MiB|characters)\.$`)
)

// maxSize bounds annotated numbers so sizes in KiB and MiB cannot overflow an int.
const maxSize = 1 << 30

// ParseComment extracts the limit annotation that ends a proto comment. It returns ok false when
// the comment has no annotation, and an error wrapping ErrBadAnnotation when the comment mentions
// "Max:" or "Exactly:" without ending in a well-formed annotation. The grammar is documented in
// docs/api.md ("Field limits").
func ParseComment(comment string) (l Limit, ok bool, err error) {
	text := strings.Join(strings.Fields(comment), " ")
	m := annotation.FindStringSubmatch(text)
	if m == nil {
		if strings.Contains(text, "Max:") || strings.Contains(text, "Exactly:") {
			return Limit{}, false, fmt.Errorf("%w: %q is not at the end of the comment", ErrBadAnnotation, text)
		}
		return Limit{}, false, nil
	}
	a := m[1]
	if strings.Contains(strings.TrimSuffix(text, a), "Max:") || strings.Contains(strings.TrimSuffix(text, a), "Exactly:") {
		return Limit{}, false, fmt.Errorf("%w: more than one annotation in %q", ErrBadAnnotation, text)
	}
	switch {
	case scalar.MatchString(a):
		s := scalar.FindStringSubmatch(a)
		l.Exact = s[1] == "Exactly"
		l.Size, l.Unit, err = size(s[2], s[3])
	case items.MatchString(a):
		l.Items, err = number(items.FindStringSubmatch(a)[1])
	case eachItem.MatchString(a):
		s := eachItem.FindStringSubmatch(a)
		if l.Items, err = number(s[1]); err == nil {
			l.Exact = s[2] == "exactly"
			l.Size, l.Unit, err = size(s[3], s[4])
		}
	default:
		return Limit{}, false, fmt.Errorf("%w: %q", ErrBadAnnotation, a)
	}
	if err != nil {
		return Limit{}, false, fmt.Errorf("%w: %q: %v", ErrBadAnnotation, a, err)
	}
	return l, true, nil
}

func number(s string) (int, error) {
	n, err := strconv.Atoi(s)
	if err != nil || n > maxSize {
		return 0, fmt.Errorf("number %s out of range 1..%d", s, maxSize)
	}
	return n, nil
}

func size(num, unit string) (int, Unit, error) {
	n, err := number(num)
	if err != nil {
		return 0, 0, err
	}
	switch unit {
	case "KiB":
		n <<= 10
	case "MiB":
		n <<= 20
	case "characters":
		return n, Characters, nil
	}
	if n > maxSize {
		return 0, 0, fmt.Errorf("size %s %s above %d bytes", num, unit, maxSize)
	}
	return n, Bytes, nil
}
