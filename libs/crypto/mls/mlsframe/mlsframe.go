// Package mlsframe builds syntactically valid MLS messages (RFC 9420 §6) with chosen outer
// fields and sizes, for tests of the Delivery Service: it reads only the unencrypted outer
// fields of a PrivateMessage and the KeyPackageRefs of a Welcome, so what is inside the
// ciphertexts does not matter to it. Real groups come from libs/crypto/mls.
package mlsframe

import "encoding/binary"

// Content types of a PrivateMessage (RFC 9420 §6).
const (
	Application = 1
	Proposal    = 2
	Commit      = 3
)

// PrivateMessage returns an MLSMessage carrying a PrivateMessage of group gid and epoch with
// the content type ct, padded with ciphertext so that the whole message is size bytes (0:
// a short one).
func PrivateMessage(gid []byte, epoch uint64, ct byte, size int) []byte {
	b := []byte{0, 1, 0, 2} // mls10, PrivateMessage
	b = appendOpaque(b, gid)
	b = binary.BigEndian.AppendUint64(b, epoch)
	b = append(b, ct)
	b = appendOpaque(b, nil)              // authenticated_data
	b = appendOpaque(b, make([]byte, 16)) // encrypted_sender_data
	return appendOpaque(b, make([]byte, padding(len(b), size)))
}

// PublicCommit returns an MLSMessage carrying a PublicMessage commit of group gid and
// epoch from the member at leaf 0: an empty commit with a dummy signature and tags. A
// Delivery Service that accepted it could read the proposals and credentials of real ones.
func PublicCommit(gid []byte, epoch uint64) []byte {
	b := []byte{0, 1, 0, 1} // mls10, PublicMessage
	b = appendOpaque(b, gid)
	b = binary.BigEndian.AppendUint64(b, epoch)
	b = append(b, 1, 0, 0, 0, 0) // sender: member at leaf 0
	b = appendOpaque(b, nil)     // authenticated_data
	b = append(b, Commit)
	b = appendOpaque(b, nil)                 // proposals
	b = append(b, 0)                         // no UpdatePath
	b = appendOpaque(b, make([]byte, 64))    // signature
	b = appendOpaque(b, make([]byte, 32))    // confirmation_tag
	return appendOpaque(b, make([]byte, 32)) // membership_tag
}

// Welcome returns an MLSMessage carrying a Welcome for the given KeyPackageRefs.
func Welcome(refs ...[]byte) []byte { return PaddedWelcome(0, refs...) }

// PaddedWelcome is Welcome padded with encrypted GroupInfo to size bytes (0: a short one).
func PaddedWelcome(size int, refs ...[]byte) []byte {
	var secrets []byte
	for _, r := range refs {
		secrets = appendOpaque(secrets, r)
		secrets = appendOpaque(secrets, make([]byte, 65)) // kem_output
		secrets = appendOpaque(secrets, make([]byte, 48)) // ciphertext
	}
	b := []byte{0, 1, 0, 3, 0, 1} // mls10, Welcome, cipher suite 1
	b = appendOpaque(b, secrets)
	return appendOpaque(b, make([]byte, padding(len(b), size))) // encrypted_group_info
}

// padding returns the length of a final opaque field that makes a message with a head
// of n bytes exactly size bytes long, or 32 when size is 0 or cannot be met.
func padding(n, size int) int {
	for _, k := range []int{1, 2, 4} {
		if c := size - n - k; c >= 0 && len(appendLength(nil, c)) == k {
			return c
		}
	}
	return 32
}

// Ref returns a distinct 32-byte KeyPackageRef for i.
func Ref(i int) []byte {
	r := make([]byte, 32)
	binary.BigEndian.PutUint64(r, uint64(i)+1)
	return r
}

func appendOpaque(b, v []byte) []byte { return append(appendLength(b, len(v)), v...) }

// appendLength appends n as a minimal QUIC variable-length integer (RFC 9420 §2.1.2).
func appendLength(b []byte, n int) []byte {
	switch {
	case n < 1<<6:
		return append(b, byte(n))
	case n < 1<<14:
		return binary.BigEndian.AppendUint16(b, uint16(n)|0x4000)
	default:
		return binary.BigEndian.AppendUint32(b, uint32(n)|0x80000000)
	}
}
