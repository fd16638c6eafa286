package client

import (
	"context"
	"fmt"
	"time"

	"github.com/guardyn/guardyn/libs/crypto/keys"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
)

// PreKeyRotation is how often the signed EC prekey and the last-resort ML-KEM prekey are
// replaced: they serve every initiator until then. Initiators refuse keys older than
// keys.MaxPreKeyAge (30 days), so a device that comes online at least every three weeks stays
// reachable; replaced keys are forgotten once no initiator accepts them any more.
const PreKeyRotation = 7 * 24 * time.Hour

// uploadInitialPreKeys generates the signed EC prekey, the last-resort ML-KEM prekey and a
// batch of one-time prekeys of each kind, saves their private halves, then uploads them.
func (c *Client) uploadInitialPreKeys(ctx context.Context) error {
	return c.uploadPreKeys(ctx, func(id *keys.Identity, st *keys.PreKeyStore, req *authv1.UploadPreKeysRequest) error {
		if err := addSigned(st, id, req, true, true, c.now()); err != nil {
			return err
		}
		return addOneTime(st, id, req, PreKeyBatch, PreKeyBatch, c.now())
	})
}

// ReplenishPreKeys tops up the device's one-time prekeys on the server when fewer than
// PreKeyLowWater of a kind are left, uploads a signed or last-resort prekey the server lacks
// (a registration interrupted before its first upload), and rotates the signed and
// last-resort prekeys once older than PreKeyRotation (forgetting rotated-out keys that no
// initiator accepts any more). It returns how many one-time prekeys of each kind it uploaded.
func (c *Client) ReplenishPreKeys(ctx context.Context) (ec, kem int, err error) {
	var counts *authv1.PreKeyCounts
	var rotateSPK, rotateLR bool
	if err := c.cycle(func(s *state) error {
		actx, err := c.bearer(ctx, s)
		if err != nil {
			return err
		}
		resp, err := c.auth.GetPreKeyCounts(actx, &authv1.GetPreKeyCountsRequest{})
		if err != nil {
			return fmt.Errorf("client: get prekey counts: %w", err)
		}
		counts = resp.GetCounts()
		st, err := s.preKeys()
		if err != nil {
			return err
		}
		due := func(created time.Time) bool { return !c.now().Before(created.Add(PreKeyRotation)) }
		if k := st.NewestSignedPreKey(); k != nil && due(k.Created()) {
			rotateSPK = true
		}
		if k := st.NewestLastResortKEMPreKey(); k != nil && due(k.Created()) {
			rotateLR = true
		}
		if st.PruneReplaced(c.now().Add(-keys.MaxPreKeyAge)) > 0 {
			return s.setPreKeys(st)
		}
		return nil
	}); err != nil {
		return 0, 0, err
	}
	if n := int(counts.GetOneTimeEcPrekeys()); n < PreKeyLowWater {
		ec = PreKeyBatch - n
	}
	if n := int(counts.GetOneTimeKemPrekeys()); n < PreKeyLowWater {
		kem = PreKeyBatch - n
	}
	needSPK := rotateSPK || !counts.GetHasSignedEcPrekey()
	needLR := rotateLR || !counts.GetHasLastResortKemPrekey()
	if ec == 0 && kem == 0 && !needSPK && !needLR {
		return 0, 0, nil
	}
	err = c.uploadPreKeys(ctx, func(id *keys.Identity, st *keys.PreKeyStore, req *authv1.UploadPreKeysRequest) error {
		if err := addSigned(st, id, req, needSPK, needLR, c.now()); err != nil {
			return err
		}
		return addOneTime(st, id, req, ec, kem, c.now())
	})
	if err != nil {
		return 0, 0, err
	}
	return ec, kem, nil
}

func addSigned(st *keys.PreKeyStore, id *keys.Identity, req *authv1.UploadPreKeysRequest, spk, lastResort bool, now time.Time) error {
	if spk {
		k, err := st.GenerateSignedPreKey(id, now)
		if err != nil {
			return fmt.Errorf("client: generate signed prekey: %w", err)
		}
		req.SignedEcPrekey = &authv1.SignedEcPreKey{Id: k.ID, PublicKey: k.Key.Bytes(), Signature: k.Signature, CreatedAt: k.Created.Unix()}
	}
	if lastResort {
		k, err := st.GenerateLastResortKEMPreKey(id, now)
		if err != nil {
			return fmt.Errorf("client: generate last-resort prekey: %w", err)
		}
		req.LastResortKemPrekey = kemProto(k)
	}
	return nil
}

// uploadPreKeys generates keys with gen and saves the private halves in one cycle, then
// uploads outside the lock. Saving first means a crash can only leave unused private keys
// behind, never public keys on the server whose private halves are lost.
func (c *Client) uploadPreKeys(ctx context.Context, gen func(*keys.Identity, *keys.PreKeyStore, *authv1.UploadPreKeysRequest) error) error {
	req := &authv1.UploadPreKeysRequest{}
	var actx context.Context
	if err := c.cycle(func(s *state) error {
		var err error
		if actx, err = c.bearer(ctx, s); err != nil {
			return err
		}
		id, err := s.identity()
		if err != nil {
			return err
		}
		st, err := s.preKeys()
		if err != nil {
			return err
		}
		if err := gen(id, st, req); err != nil {
			return err
		}
		return s.setPreKeys(st)
	}); err != nil {
		return err
	}
	if _, err := c.auth.UploadPreKeys(actx, req); err != nil {
		return fmt.Errorf("client: upload prekeys: %w", err)
	}
	return nil
}

func addOneTime(st *keys.PreKeyStore, id *keys.Identity, req *authv1.UploadPreKeysRequest, ec, kem int, now time.Time) error {
	if ec > 0 {
		otks, err := st.GenerateOneTimePreKeys(ec)
		if err != nil {
			return fmt.Errorf("client: generate one-time prekeys: %w", err)
		}
		for _, k := range otks {
			req.OneTimeEcPrekeys = append(req.OneTimeEcPrekeys, &authv1.EcPreKey{Id: k.ID, PublicKey: k.Key.Bytes()})
		}
	}
	if kem > 0 {
		kems, err := st.GenerateKEMPreKeys(id, kem, now)
		if err != nil {
			return fmt.Errorf("client: generate ML-KEM prekeys: %w", err)
		}
		for _, k := range kems {
			req.OneTimeKemPrekeys = append(req.OneTimeKemPrekeys, kemProto(k))
		}
	}
	return nil
}

func kemProto(k *keys.KEMPreKeyPublic) *authv1.SignedKemPreKey {
	return &authv1.SignedKemPreKey{Id: k.ID, PublicKey: k.Key.Bytes(), Signature: k.Signature, CreatedAt: k.Created.Unix()}
}

// bundleFromProto parses a key bundle from the server; session.Initiate verifies its
// signatures.
func bundleFromProto(b *authv1.KeyBundle) (*keys.Bundle, error) {
	ik, err := keys.ParseIdentityKey(b.GetIdentityKey())
	if err != nil {
		return nil, fmt.Errorf("client: bundle of device %d: identity key: %w", b.GetDeviceId(), err)
	}
	spk := b.GetSignedEcPrekey()
	sp, err := keys.ParseSignedPreKeyPublic(spk.GetId(), time.Unix(spk.GetCreatedAt(), 0), spk.GetPublicKey(), spk.GetSignature())
	if err != nil {
		return nil, fmt.Errorf("client: bundle of device %d: signed prekey: %w", b.GetDeviceId(), err)
	}
	bundle := &keys.Bundle{IdentityKey: ik, SignedPreKey: sp}
	if otk := b.GetOneTimeEcPrekey(); otk != nil {
		if bundle.OneTimePreKey, err = keys.ParseOneTimePreKeyPublic(otk.GetId(), otk.GetPublicKey()); err != nil {
			return nil, fmt.Errorf("client: bundle of device %d: one-time prekey: %w", b.GetDeviceId(), err)
		}
	}
	kp := b.GetKemPrekey()
	if bundle.KEMPreKey, err = keys.ParseKEMPreKeyPublic(kp.GetId(), time.Unix(kp.GetCreatedAt(), 0), kp.GetPublicKey(), b.GetKemPrekeyIsLastResort(), kp.GetSignature()); err != nil {
		return nil, fmt.Errorf("client: bundle of device %d: ML-KEM prekey: %w", b.GetDeviceId(), err)
	}
	return bundle, nil
}
