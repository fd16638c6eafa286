package mls_test

import (
	"testing"

	"github.com/guardyn/guardyn/libs/crypto/mls/internal/tlscodec"
	"github.com/guardyn/guardyn/libs/crypto/mls/internal/wire"
)

// TestVectorsMessages decodes every structure of messages.json and checks
// that re-encoding gives the same bytes.
func TestVectorsMessages(t *testing.T) {
	var cases []map[string]hexBytes
	loadVectors(t, "messages.json", &cases)
	type decoder func([]byte) (wire.Marshaler, error)
	body := func(pt wire.ProposalType) decoder {
		return func(b []byte) (wire.Marshaler, error) {
			p, err := wire.DecodeProposalBody(pt, b)
			if err != nil {
				return nil, err
			}
			return bodyOnly{p}, nil
		}
	}
	msg := func(want wire.WireFormat) decoder {
		return func(b []byte) (wire.Marshaler, error) {
			m, err := wire.DecodeMLSMessage(b)
			if err == nil && m.WireFormat != want {
				t.Errorf("wire format %d, want %d", m.WireFormat, want)
			}
			return m, err
		}
	}
	decoders := map[string]decoder{
		"mls_welcome":     msg(wire.WireWelcome),
		"mls_group_info":  msg(wire.WireGroupInfo),
		"mls_key_package": msg(wire.WireKeyPackage),
		"ratchet_tree": func(b []byte) (wire.Marshaler, error) {
			return wire.DecodeRatchetTree(b)
		},
		"group_secrets": func(b []byte) (wire.Marshaler, error) {
			return wire.DecodeGroupSecrets(b)
		},
		"add_proposal":                      body(wire.ProposalAdd),
		"update_proposal":                   body(wire.ProposalUpdate),
		"remove_proposal":                   body(wire.ProposalRemove),
		"pre_shared_key_proposal":           body(wire.ProposalPreSharedKey),
		"re_init_proposal":                  body(wire.ProposalReInit),
		"external_init_proposal":            body(wire.ProposalExternalInit),
		"group_context_extensions_proposal": body(wire.ProposalGroupContextExtensions),
		"commit": func(b []byte) (wire.Marshaler, error) {
			return wire.DecodeCommit(b)
		},
		"public_message_application": msg(wire.WirePublicMessage),
		"public_message_proposal":    msg(wire.WirePublicMessage),
		"public_message_commit":      msg(wire.WirePublicMessage),
		"private_message":            msg(wire.WirePrivateMessage),
	}
	structs := 0
	for i, c := range cases {
		for field, data := range c {
			dec, ok := decoders[field]
			if !ok {
				t.Fatalf("case %d: unknown field %q", i, field)
			}
			m, err := dec(data)
			if err != nil {
				t.Errorf("case %d %s: %v", i, field, err)
				continue
			}
			checkEq(t, field+" re-encoding", wire.Encode(m), data)
			structs++
		}
	}
	t.Logf("messages.json: %d cases run, %d structures round-tripped (suite-independent syntax)", len(cases), structs)
}

type bodyOnly struct{ p *wire.Proposal }

func (b bodyOnly) Marshal(w *tlscodec.Writer) { b.p.MarshalBody(w) }
