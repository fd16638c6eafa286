package apidesc_test

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"

	"github.com/guardyn/guardyn/proto/apidesc"
	commonv1 "github.com/guardyn/guardyn/proto/guardyn/common/v1"
	"github.com/guardyn/guardyn/proto/protolimits"
)

// The rules below are the API lint of docs/api.md ("Lint rules"); each test names its rule.

// guardynFiles returns the Guardyn proto files of the embedded descriptor set.
func guardynFiles(t *testing.T) []protoreflect.FileDescriptor {
	t.Helper()
	files, err := apidesc.Files()
	if err != nil {
		t.Fatal(err)
	}
	var out []protoreflect.FileDescriptor
	files.RangeFiles(func(fd protoreflect.FileDescriptor) bool {
		if strings.HasPrefix(fd.Path(), "guardyn/") {
			out = append(out, fd)
		}
		return true
	})
	slices.SortFunc(out, func(a, b protoreflect.FileDescriptor) int { return strings.Compare(a.Path(), b.Path()) })
	for _, name := range []string{"common", "auth", "messaging", "media", "presence", "notification"} {
		path := "guardyn/" + name + "/v1/" + name + ".proto"
		if !slices.ContainsFunc(out, func(fd protoreflect.FileDescriptor) bool { return fd.Path() == path }) {
			t.Fatalf("descriptor set lacks %s", path)
		}
	}
	return out
}

func comment(d protoreflect.Descriptor) string {
	return strings.TrimSpace(d.ParentFile().SourceLocations().ByDescriptor(d).LeadingComments)
}

var (
	pascalCase     = regexp.MustCompile(`^[A-Z][a-z0-9]+(?:[A-Z][a-z0-9]*)*$`)
	lowerSnakeCase = regexp.MustCompile(`^[a-z][a-z0-9]*(?:_[a-z0-9]+)*$`)
	upperSnakeCase = regexp.MustCompile(`^[A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*$`)
	filePath       = regexp.MustCompile(`^guardyn/([a-z]+)/v1/([a-z_]+)\.proto$`)
)

// Rule: a file lives at guardyn/<name>/v1/<name>.proto, declares package guardyn.<name>.v1 and
// go_package github.com/guardyn/guardyn/proto/guardyn/<name>/v1;<name>v1.
func TestLintPackages(t *testing.T) {
	for _, fd := range guardynFiles(t) {
		m := filePath.FindStringSubmatch(fd.Path())
		if m == nil || m[1] != m[2] {
			t.Errorf("%s: want guardyn/<name>/v1/<name>.proto", fd.Path())
			continue
		}
		if want := "guardyn." + m[1] + ".v1"; string(fd.Package()) != want {
			t.Errorf("%s: package %s, want %s", fd.Path(), fd.Package(), want)
		}
		opts := fd.Options().(*descriptorpb.FileOptions)
		if want := fmt.Sprintf("github.com/guardyn/guardyn/proto/guardyn/%s/v1;%sv1", m[1], m[1]); opts.GetGoPackage() != want {
			t.Errorf("%s: go_package %q, want %q", fd.Path(), opts.GetGoPackage(), want)
		}
		if fd.Syntax() != protoreflect.Proto3 {
			t.Errorf("%s: syntax %s, want proto3", fd.Path(), fd.Syntax())
		}
	}
}

// Rules: PascalCase messages, enums, services and RPCs; lower_snake_case fields and oneofs;
// UPPER_SNAKE_CASE enum values prefixed with the enum name, zero value <ENUM_NAME>_UNSPECIFIED;
// services end in Service.
func TestLintNames(t *testing.T) {
	for _, fd := range guardynFiles(t) {
		eachMessage(fd.Messages(), func(md protoreflect.MessageDescriptor) {
			if !pascalCase.MatchString(string(md.Name())) {
				t.Errorf("message %s: want PascalCase", md.FullName())
			}
			for i := range md.Fields().Len() {
				if f := md.Fields().Get(i); !lowerSnakeCase.MatchString(string(f.Name())) {
					t.Errorf("field %s: want lower_snake_case", f.FullName())
				}
			}
			for i := range md.Oneofs().Len() {
				if o := md.Oneofs().Get(i); !lowerSnakeCase.MatchString(string(o.Name())) {
					t.Errorf("oneof %s: want lower_snake_case", o.FullName())
				}
			}
			lintEnums(t, md.Enums())
		})
		lintEnums(t, fd.Enums())
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			if !pascalCase.MatchString(string(sd.Name())) || !strings.HasSuffix(string(sd.Name()), "Service") {
				t.Errorf("service %s: want PascalCase ending in Service", sd.FullName())
			}
			for j := range sd.Methods().Len() {
				if m := sd.Methods().Get(j); !pascalCase.MatchString(string(m.Name())) {
					t.Errorf("rpc %s: want PascalCase", m.FullName())
				}
			}
		}
	}
}

func lintEnums(t *testing.T, enums protoreflect.EnumDescriptors) {
	for i := range enums.Len() {
		ed := enums.Get(i)
		if !pascalCase.MatchString(string(ed.Name())) {
			t.Errorf("enum %s: want PascalCase", ed.FullName())
		}
		prefix := upperSnake(string(ed.Name())) + "_"
		if zero := ed.Values().ByNumber(0); zero == nil || string(zero.Name()) != prefix+"UNSPECIFIED" {
			t.Errorf("enum %s: zero value must be %sUNSPECIFIED", ed.FullName(), prefix)
		}
		for j := range ed.Values().Len() {
			v := ed.Values().Get(j)
			if !upperSnakeCase.MatchString(string(v.Name())) || !strings.HasPrefix(string(v.Name()), prefix) {
				t.Errorf("enum value %s: want UPPER_SNAKE_CASE starting with %s", v.FullName(), prefix)
			}
		}
	}
}

// upperSnake turns PascalCase into UPPER_SNAKE_CASE: DeliveryKind → DELIVERY_KIND.
func upperSnake(s string) string {
	var b strings.Builder
	for i, r := range s {
		if i > 0 && r >= 'A' && r <= 'Z' {
			b.WriteByte('_')
		}
		b.WriteRune(r)
	}
	return strings.ToUpper(b.String())
}

func eachMessage(msgs protoreflect.MessageDescriptors, f func(protoreflect.MessageDescriptor)) {
	for i := range msgs.Len() {
		f(msgs.Get(i))
		eachMessage(msgs.Get(i).Messages(), f)
	}
}

// Rule: every RPC takes <Rpc>Request and returns <Rpc>Response, declared in the RPC's own file,
// and no two RPCs share a request or response message.
func TestLintRequestResponse(t *testing.T) {
	used := map[protoreflect.FullName]protoreflect.FullName{}
	for _, fd := range guardynFiles(t) {
		for i := range fd.Services().Len() {
			methods := fd.Services().Get(i).Methods()
			for j := range methods.Len() {
				m := methods.Get(j)
				for _, io := range []struct {
					md     protoreflect.MessageDescriptor
					suffix string
				}{{m.Input(), "Request"}, {m.Output(), "Response"}} {
					if want := string(m.Name()) + io.suffix; string(io.md.Name()) != want || io.md.ParentFile() != fd {
						t.Errorf("rpc %s uses %s, want %s.%s", m.FullName(), io.md.FullName(), fd.Package(), want)
					}
					if other, ok := used[io.md.FullName()]; ok {
						t.Errorf("rpcs %s and %s share %s", other, m.FullName(), io.md.FullName())
					}
					used[io.md.FullName()] = m.FullName()
				}
			}
		}
	}
}

// Rule: every service, RPC, message, field, oneof, enum and enum value has a comment; those of
// services, RPCs, messages and enums start with the element's name.
func TestLintComments(t *testing.T) {
	need := func(d protoreflect.Descriptor, namedFirst bool) {
		c := comment(d)
		switch {
		case c == "":
			t.Errorf("%s has no comment", d.FullName())
		case namedFirst && !strings.HasPrefix(c, string(d.Name())+" "):
			t.Errorf("%s: comment should start with %q", d.FullName(), d.Name())
		}
	}
	for _, fd := range guardynFiles(t) {
		eachMessage(fd.Messages(), func(md protoreflect.MessageDescriptor) {
			need(md, true)
			for i := range md.Fields().Len() {
				need(md.Fields().Get(i), false)
			}
			for i := range md.Oneofs().Len() {
				need(md.Oneofs().Get(i), false)
			}
			for i := range md.Enums().Len() {
				needEnum(md.Enums().Get(i), need)
			}
		})
		for i := range fd.Enums().Len() {
			needEnum(fd.Enums().Get(i), need)
		}
		for i := range fd.Services().Len() {
			sd := fd.Services().Get(i)
			need(sd, true)
			for j := range sd.Methods().Len() {
				need(sd.Methods().Get(j), true)
			}
		}
		for i := range fd.Extensions().Len() {
			need(fd.Extensions().Get(i), false)
		}
	}
}

func needEnum(ed protoreflect.EnumDescriptor, need func(protoreflect.Descriptor, bool)) {
	need(ed, true)
	for i := range ed.Values().Len() {
		need(ed.Values().Get(i), false)
	}
}

// reasonCodes maps every ErrorReason string to the gRPC code its comment starts with.
func reasonCodes(t *testing.T) map[string]codes.Code {
	t.Helper()
	files, err := apidesc.Files()
	if err != nil {
		t.Fatal(err)
	}
	d, err := files.FindDescriptorByName("guardyn.common.v1.ErrorReason")
	if err != nil {
		t.Fatal(err)
	}
	ed := d.(protoreflect.EnumDescriptor)
	out := map[string]codes.Code{}
	for i := range ed.Values().Len() {
		v := ed.Values().Get(i)
		if v.Number() == 0 {
			continue
		}
		code, _, ok := strings.Cut(comment(v), ":")
		c, known := codeByName[code]
		if !ok || !known {
			t.Errorf("%s: comment must start with a gRPC code name and a colon, e.g. \"NOT_FOUND: ...\"", v.FullName())
		}
		out[commonv1.ErrorReason(v.Number()).Reason()] = c
	}
	return out
}

// codeByName maps UPPER_SNAKE gRPC code names (as in google.rpc.Code) to codes.
var codeByName = func() map[string]codes.Code {
	m := map[string]codes.Code{}
	for c := codes.OK; c <= codes.Unauthenticated; c++ {
		m[upperSnake(c.String())] = c
	}
	m["CANCELLED"] = codes.Canceled // google.rpc.Code spelling
	return m
}()

// errorEntry is one "CODE/REASON, REASON: when" line of an RPC's Errors section.
var errorEntry = regexp.MustCompile(`^- ([A-Z_]+)(?:/([A-Z_, ]+))?: \S`)

// rpcErrors parses the Errors section of an RPC comment into code → reasons.
func rpcErrors(t *testing.T, m protoreflect.MethodDescriptor) map[string]codes.Code {
	t.Helper()
	lines := strings.Split(comment(m), "\n")
	start := slices.IndexFunc(lines, func(l string) bool {
		l = strings.TrimSpace(l)
		return strings.HasPrefix(l, "Errors") && strings.HasSuffix(l, ":")
	})
	if start < 0 {
		t.Errorf("rpc %s: comment has no Errors section", m.FullName())
		return nil
	}
	reasons := map[string]codes.Code{}
	entries := 0
	for _, line := range lines[start+1:] {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "- ") {
			continue // continuation of the previous entry
		}
		e := errorEntry.FindStringSubmatch(line)
		code, known := codeByName[valueOr(e, 1)]
		if e == nil || !known {
			t.Errorf("rpc %s: malformed error entry %q, want \"- CODE/REASON: when\"", m.FullName(), line)
			continue
		}
		entries++
		if e[2] == "" {
			continue
		}
		for _, r := range strings.Split(e[2], ", ") {
			reasons[r] = code
		}
	}
	if entries == 0 {
		t.Errorf("rpc %s: Errors section lists nothing", m.FullName())
	}
	return reasons
}

func valueOr(m []string, i int) string {
	if m == nil {
		return ""
	}
	return m[i]
}

// publicRPCs are the RPCs callable without an access token (docs/api.md).
var publicRPCs = []string{
	"guardyn.auth.v1.AuthService.GetDeviceLinkStatus",
	"guardyn.auth.v1.AuthService.GetLoginChallenge",
	"guardyn.auth.v1.AuthService.GetTrustRoot",
	"guardyn.auth.v1.AuthService.Login",
	"guardyn.auth.v1.AuthService.RefreshToken",
	"guardyn.auth.v1.AuthService.Register",
	"guardyn.auth.v1.AuthService.StartDeviceLink",
}

// Rules: every RPC comment has an Errors section whose reasons are ErrorReason values used with
// the code their comment names; every RPC lists RATE_LIMITED; an RPC lists LIMIT_EXCEEDED exactly
// when its request has a limited field; authenticated RPCs list the four token reasons, public
// ones none; only the documented RPCs are public; every reason is used by some RPC.
func TestLintErrors(t *testing.T) {
	known := reasonCodes(t)
	limits, err := protolimits.FromAPI()
	if err != nil {
		t.Fatal(err)
	}
	used := map[string]bool{}
	var public []string
	for _, fd := range guardynFiles(t) {
		for i := range fd.Services().Len() {
			methods := fd.Services().Get(i).Methods()
			for j := range methods.Len() {
				m := methods.Get(j)
				reasons := rpcErrors(t, m)
				for r, code := range reasons {
					used[r] = true
					if want, ok := known[r]; !ok {
						t.Errorf("rpc %s: reason %s is not an ErrorReason", m.FullName(), r)
					} else if code != want {
						t.Errorf("rpc %s: reason %s with %s, but ErrorReason documents %s", m.FullName(), r, code, want)
					}
				}
				if _, ok := reasons["RATE_LIMITED"]; !ok {
					t.Errorf("rpc %s: does not list RESOURCE_EXHAUSTED/RATE_LIMITED", m.FullName())
				}
				_, listsLimit := reasons["LIMIT_EXCEEDED"]
				if limited := hasLimit(limits, m.Input(), map[protoreflect.FullName]bool{}); limited != listsLimit {
					t.Errorf("rpc %s: request has limited fields = %v, lists LIMIT_EXCEEDED = %v", m.FullName(), limited, listsLimit)
				}
				isPublic := proto.GetExtension(m.Options(), commonv1.E_Public).(bool)
				if isPublic {
					public = append(public, string(m.FullName()))
				}
				for _, r := range []string{"TOKEN_MISSING", "TOKEN_INVALID", "TOKEN_EXPIRED", "DEVICE_REMOVED"} {
					_, lists := reasons[r]
					switch {
					case !isPublic && !lists:
						t.Errorf("rpc %s needs a token but does not list %s", m.FullName(), r)
					case isPublic && lists && r != "DEVICE_REMOVED":
						t.Errorf("rpc %s is public but lists %s", m.FullName(), r)
					}
				}
			}
		}
	}
	slices.Sort(public)
	if !slices.Equal(public, publicRPCs) {
		t.Errorf("public RPCs = %v, want %v", public, publicRPCs)
	}
	for r := range known {
		if !used[r] {
			t.Errorf("ErrorReason %s is listed by no RPC: use it or drop it", r)
		}
	}
}

func hasLimit(limits *protolimits.Limits, md protoreflect.MessageDescriptor, seen map[protoreflect.FullName]bool) bool {
	if seen[md.FullName()] {
		return false
	}
	seen[md.FullName()] = true
	for i := range md.Fields().Len() {
		fd := md.Fields().Get(i)
		if _, ok := limits.Lookup(fd); ok {
			return true
		}
		if fd.Message() != nil && hasLimit(limits, fd.Message(), seen) {
			return true
		}
	}
	return false
}
