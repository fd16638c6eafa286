// Package protolimits enforces the field size limits that end the Guardyn proto comments
// ("Max: 64 characters.", "Exactly: 65 bytes.", "Max: 100 items, each max 16 KiB."), so a
// service can reject oversize requests before handling them. The grammar and its meaning are
// specified in docs/api.md ("Field limits").
//
// Build a [Limits] once at startup with [FromAPI] (or [New] for another descriptor set) and call
// [Limits.Check] on every request, typically from a gRPC interceptor that maps its error to
// INVALID_ARGUMENT with reason LIMIT_EXCEEDED.
package protolimits

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/guardyn/guardyn/proto/apidesc"
)

// Limits holds the parsed limits of every message of a descriptor set. It is safe for
// concurrent use.
type Limits struct {
	plans map[protoreflect.FullName][]fieldPlan
	// resolved caches, per message descriptor that Check has seen (one per message type), the
	// plan bound to that descriptor's own fields, so a check does no name lookups.
	resolved sync.Map // protoreflect.MessageDescriptor → []boundField
}

// boundField is a fieldPlan bound to the field descriptor of a concrete message type.
type boundField struct {
	fd      protoreflect.FieldDescriptor
	name    protoreflect.Name // fd.Name(), which descriptors compute on every call
	limit   *Limit
	descend bool
}

// bind returns the plan of md bound to md's field descriptors. Fields that do not match the
// parsed schema (another version of the message) are skipped.
func (l *Limits) bind(md protoreflect.MessageDescriptor) []boundField {
	if v, ok := l.resolved.Load(md); ok {
		return v.([]boundField)
	}
	plan := l.plans[md.FullName()]
	bound := make([]boundField, 0, len(plan))
	for _, p := range plan {
		fd := md.Fields().ByNumber(p.number)
		if fd == nil || fd.Name() != p.name {
			continue
		}
		bound = append(bound, boundField{fd: fd, name: p.name, limit: p.limit, descend: p.descend && holdsMessages(fd)})
	}
	l.resolved.Store(md, bound)
	return bound
}

// fieldPlan is what Check does with one field of a message: measure it against limit (when
// set) and descend into it (when it holds messages).
type fieldPlan struct {
	number  protoreflect.FieldNumber
	name    protoreflect.Name
	limit   *Limit
	descend bool
}

// FromAPI parses the limits of the Guardyn APIs from the descriptor set embedded in
// package apidesc. It does the work on every call; call it once and share the result.
func FromAPI() (*Limits, error) {
	files, err := apidesc.Files()
	if err != nil {
		return nil, fmt.Errorf("protolimits: %w", err)
	}
	return New(files)
}

// New parses the limit annotations of every field of every message in files, whose descriptors
// must carry source info (comments). An annotation that is malformed or does not fit its field
// (a size on a message field, items on a singular field, characters on bytes...) is an error
// wrapping ErrBadAnnotation that names the field.
func New(files *protoregistry.Files) (*Limits, error) {
	l := &Limits{plans: map[protoreflect.FullName][]fieldPlan{}}
	var err error
	files.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		err = l.addMessages(fd.Messages())
		return err == nil
	})
	if err != nil {
		return nil, err
	}
	return l, nil
}

func (l *Limits) addMessages(msgs protoreflect.MessageDescriptors) error {
	for i := range msgs.Len() {
		md := msgs.Get(i)
		var plan []fieldPlan
		for j := range md.Fields().Len() {
			fd := md.Fields().Get(j)
			comment := md.ParentFile().SourceLocations().ByDescriptor(fd).LeadingComments
			limit, ok, err := ParseComment(comment)
			if err != nil {
				return fmt.Errorf("protolimits: field %s: %w", fd.FullName(), err)
			}
			p := fieldPlan{number: fd.Number(), name: fd.Name(), descend: holdsMessages(fd)}
			if ok {
				if err := fits(fd, limit); err != nil {
					return fmt.Errorf("protolimits: field %s: %w: %v", fd.FullName(), ErrBadAnnotation, err)
				}
				p.limit = &limit
			}
			if p.limit != nil || p.descend {
				plan = append(plan, p)
			}
		}
		l.plans[md.FullName()] = plan
		if err := l.addMessages(md.Messages()); err != nil {
			return err
		}
	}
	return nil
}

// holdsMessages reports whether Check descends into a field. Map fields are not walked: the
// limits grammar has no form for them, so New rejects a limit on a map and the API uses
// repeated messages instead.
func holdsMessages(fd protoreflect.FieldDescriptor) bool {
	return !fd.IsMap() && (fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind)
}

// fits reports whether a limit makes sense for a field.
func fits(fd protoreflect.FieldDescriptor, l Limit) error {
	repeated := fd.IsList()
	kind := fd.Kind()
	switch {
	case fd.IsMap():
		return errors.New("map fields cannot carry limits; use a repeated message")
	case repeated && l.Items == 0:
		return errors.New("a repeated field needs an item count (Max: N items.)")
	case !repeated && l.Items > 0:
		return errors.New("an item count on a singular field")
	case l.Size == 0:
		if repeated && (kind == protoreflect.StringKind || kind == protoreflect.BytesKind) {
			return errors.New("repeated strings or bytes need a size for each item")
		}
		return nil
	case kind == protoreflect.StringKind && l.Unit != Characters:
		return errors.New("a string is measured in characters")
	case kind == protoreflect.BytesKind && l.Unit != Bytes:
		return errors.New("bytes are measured in bytes, KiB or MiB")
	case kind != protoreflect.StringKind && kind != protoreflect.BytesKind:
		return fmt.Errorf("a size on a %s field", kind)
	}
	return nil
}

// Lookup returns the limit of a field, if its comment has one.
func (l *Limits) Lookup(fd protoreflect.FieldDescriptor) (Limit, bool) {
	for _, p := range l.plans[fd.ContainingMessage().FullName()] {
		if p.number == fd.Number() && p.limit != nil {
			return *p.limit, true
		}
	}
	return Limit{}, false
}

// ErrLimitExceeded is wrapped by every error Check returns.
var ErrLimitExceeded = errors.New("field exceeds its limit")

// LimitError describes the first field of a message that breaks its limit.
type LimitError struct {
	// Message is the full name of the checked (top-level) message.
	Message protoreflect.FullName
	// Path leads from Message to the field, e.g. "envelopes[3].sealed_envelope".
	Path string
	// Limit is the field's annotation.
	Limit Limit
	// Items is true when the element count broke the limit, false when a size did.
	Items bool
	// Actual is the measured count or size (in Limit.Unit).
	Actual int
}

func (e *LimitError) Error() string {
	if e.Items {
		return fmt.Sprintf("%s.%s has %d items, want at most %d", e.Message, e.Path, e.Actual, e.Limit.Items)
	}
	want := "at most"
	if e.Limit.Exact {
		want = "exactly"
	}
	return fmt.Sprintf("%s.%s is %d %s, want %s %d", e.Message, e.Path, e.Actual, e.Limit.Unit, want, e.Limit.Size)
}

// Metadata returns the google.rpc.ErrorInfo metadata that docs/api.md specifies for
// LIMIT_EXCEEDED: the field path, the limit annotation and the measured size.
func (e *LimitError) Metadata() map[string]string {
	return map[string]string{
		"field":  e.Path,
		"limit":  e.Limit.String(),
		"actual": strconv.Itoa(e.Actual),
	}
}

// Unwrap makes errors.Is(err, ErrLimitExceeded) hold.
func (e *LimitError) Unwrap() error { return ErrLimitExceeded }

// Check measures every annotated field of m and of the messages nested in it against its
// limit and returns a *LimitError for the first field (in field-number order, depth first) that
// exceeds it. Fields are measured as specified in docs/api.md: strings in Unicode code points,
// bytes in bytes, repeated fields in elements; an Exactly size applies to every field that is
// present, and proto3 string and bytes fields without explicit presence are always present
// (empty counts as length 0). Messages this Limits does not know have no limits.
func (l *Limits) Check(m proto.Message) error {
	if m == nil {
		return nil
	}
	r := m.ProtoReflect()
	if !r.IsValid() {
		return nil
	}
	// Four steps are deep enough for every Guardyn request, so the path is allocated once.
	c := checker{limits: l, root: r.Descriptor().FullName(), path: make([]step, 0, 4)}
	return c.message(r)
}

// checker walks one message. It keeps the path to the current field as steps and renders it
// only into an error, so valid messages cost no formatting.
type checker struct {
	limits *Limits
	root   protoreflect.FullName
	path   []step
}

// step is one field on the path, with the element index when inside a list.
type step struct {
	name  protoreflect.Name
	index int
	elem  bool
}

func (c *checker) message(m protoreflect.Message) error {
	for _, p := range c.limits.bind(m.Descriptor()) {
		if p.fd.HasPresence() && !m.Has(p.fd) {
			continue
		}
		c.path = append(c.path, step{name: p.name})
		if err := c.field(m, p); err != nil {
			return err
		}
		c.path = c.path[:len(c.path)-1]
	}
	return nil
}

func (c *checker) field(m protoreflect.Message, p boundField) error {
	fd := p.fd
	if !fd.IsList() {
		return c.value(fd, p, m.Get(fd))
	}
	list := m.Get(fd).List()
	if p.limit != nil && list.Len() > p.limit.Items {
		return c.fail(*p.limit, true, list.Len())
	}
	if !p.descend && (p.limit == nil || p.limit.Size == 0) {
		return nil // numbers: only the count is limited
	}
	top := len(c.path) - 1
	for i := range list.Len() {
		c.path[top].elem, c.path[top].index = true, i
		if err := c.value(fd, p, list.Get(i)); err != nil {
			return err
		}
	}
	return nil
}

// value checks one singular value or list element.
func (c *checker) value(fd protoreflect.FieldDescriptor, p boundField, v protoreflect.Value) error {
	if p.descend {
		return c.message(v.Message())
	}
	if p.limit == nil || p.limit.Size == 0 {
		return nil
	}
	var n int
	switch fd.Kind() {
	case protoreflect.StringKind:
		s := v.String()
		n = len(s)
		// Counting code points is only needed when the byte length could exceed the limit.
		if n > p.limit.Size || p.limit.Exact {
			n = utf8.RuneCountInString(s)
		}
	case protoreflect.BytesKind:
		n = len(v.Bytes())
	default:
		return nil
	}
	if n > p.limit.Size || (p.limit.Exact && n != p.limit.Size) {
		return c.fail(*p.limit, false, n)
	}
	return nil
}

func (c *checker) fail(limit Limit, items bool, actual int) error {
	var b strings.Builder
	for i, s := range c.path {
		if i > 0 {
			b.WriteByte('.')
		}
		b.WriteString(string(s.name))
		// The count of a list is the field itself, not one of its elements.
		if s.elem && !(items && i == len(c.path)-1) {
			b.WriteByte('[')
			b.WriteString(strconv.Itoa(s.index))
			b.WriteByte(']')
		}
	}
	return &LimitError{Message: c.root, Path: b.String(), Limit: limit, Items: items, Actual: actual}
}
