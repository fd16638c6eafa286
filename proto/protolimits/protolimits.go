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
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/reflect/protoregistry"

	"github.com/guardyn/guardyn/proto/apidesc"
)

// Limits holds the parsed limits of every message of a descriptor set. It is immutable and safe
// for concurrent use.
type Limits struct {
	plans map[protoreflect.FullName][]fieldPlan
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

func holdsMessages(fd protoreflect.FieldDescriptor) bool {
	if fd.IsMap() {
		return isMessage(fd.MapValue())
	}
	return isMessage(fd)
}

func isMessage(fd protoreflect.FieldDescriptor) bool {
	return fd.Kind() == protoreflect.MessageKind || fd.Kind() == protoreflect.GroupKind
}

// fits reports whether a limit makes sense for a field.
func fits(fd protoreflect.FieldDescriptor, l Limit) error {
	repeated := fd.IsList() || fd.IsMap()
	kind := fd.Kind()
	if fd.IsMap() {
		kind = fd.MapValue().Kind()
	}
	switch {
	case repeated && l.Items == 0:
		return errors.New("a repeated field needs an item count (Max: N items.)")
	case !repeated && l.Items > 0:
		return errors.New("an item count on a singular field")
	case l.Size == 0:
		if repeated && (kind == protoreflect.StringKind || kind == protoreflect.BytesKind) {
			return errors.New("repeated strings or bytes need a size for each item")
		}
		return nil
	case fd.IsMap():
		return errors.New("a size on a map field")
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
	// One buffer serves every field path; it is only copied into an error.
	path := make([]byte, 0, 64)
	return l.check(r, r.Descriptor().FullName(), path)
}

func (l *Limits) check(m protoreflect.Message, root protoreflect.FullName, path []byte) error {
	fields := m.Descriptor().Fields()
	for _, p := range l.plans[m.Descriptor().FullName()] {
		fd := fields.ByNumber(p.number)
		if fd == nil || fd.Name() != p.name {
			continue // the message comes from a different version of the schema
		}
		if fd.HasPresence() && !m.Has(fd) {
			continue
		}
		fieldPath := append(appendDot(path), p.name...)
		switch {
		case fd.IsList():
			list := m.Get(fd).List()
			if p.limit != nil && list.Len() > p.limit.Items {
				return &LimitError{Message: root, Path: string(fieldPath), Limit: *p.limit, Items: true, Actual: list.Len()}
			}
			for i := range list.Len() {
				elemPath := append(strconv.AppendInt(append(fieldPath, '['), int64(i), 10), ']')
				if err := l.checkValue(fd, p, list.Get(i), root, elemPath); err != nil {
					return err
				}
			}
		case fd.IsMap():
			mp := m.Get(fd).Map()
			if p.limit != nil && mp.Len() > p.limit.Items {
				return &LimitError{Message: root, Path: string(fieldPath), Limit: *p.limit, Items: true, Actual: mp.Len()}
			}
			if p.descend {
				var err error
				mp.Range(func(k protoreflect.MapKey, v protoreflect.Value) bool {
					elemPath := append(append(append(fieldPath, '['), k.String()...), ']')
					err = l.check(v.Message(), root, elemPath)
					return err == nil
				})
				if err != nil {
					return err
				}
			}
		default:
			if err := l.checkValue(fd, p, m.Get(fd), root, fieldPath); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkValue checks one singular value or list element.
func (l *Limits) checkValue(fd protoreflect.FieldDescriptor, p fieldPlan, v protoreflect.Value, root protoreflect.FullName, path []byte) error {
	if p.descend {
		return l.check(v.Message(), root, path)
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
		return &LimitError{Message: root, Path: string(path), Limit: *p.limit, Actual: n}
	}
	return nil
}

func appendDot(path []byte) []byte {
	if len(path) == 0 {
		return path
	}
	return append(path, '.')
}
