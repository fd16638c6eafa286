package messaging_test

import "encoding/binary"

// Syntactically valid MLS messages with chosen outer fields, as the Delivery Service reads
// them (a copy of tools/internal/mlsframe, which this package may not import).

const (
	mlsApplication = 1
	mlsProposal    = 2
	mlsCommit      = 3
)

// mlsPrivateMessage returns an MLSMessage carrying a PrivateMessage of group gid and epoch
// with content type ct, size bytes long (0: a short one).
func mlsPrivateMessage(gid []byte, epoch uint64, ct byte, size int) []byte {
	b := []byte{0, 1, 0, 2} // mls10, PrivateMessage
	b = appendOpaque(b, gid)
	b = binary.BigEndian.AppendUint64(b, epoch)
	b = append(b, ct)
	b = appendOpaque(b, nil)              // authenticated_data
	b = appendOpaque(b, make([]byte, 16)) // encrypted_sender_data
	return appendOpaque(b, make([]byte, padding(len(b), size)))
}

// mlsWelcome returns an MLSMessage carrying a Welcome for the given KeyPackageRefs.
func mlsWelcome(refs ...[]byte) []byte { return mlsPaddedWelcome(0, refs...) }

// mlsPaddedWelcome is mlsWelcome padded with encrypted GroupInfo to size bytes (0: a short one).
func mlsPaddedWelcome(size int, refs ...[]byte) []byte {
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

// mlsRef returns a distinct 32-byte KeyPackageRef for i.
func mlsRef(i int) []byte {
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
