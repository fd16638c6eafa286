package auth

import (
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/guardyn/guardyn/libs/authn"
	"github.com/guardyn/guardyn/libs/crypto/keys"
	"github.com/guardyn/guardyn/libs/kv"
	"github.com/guardyn/guardyn/libs/server"
	authv1 "github.com/guardyn/guardyn/proto/guardyn/auth/v1"
)

// UploadPreKeys stores the calling device's prekeys after verifying every signature.
func (s *Server) UploadPreKeys(ctx context.Context, req *authv1.UploadPreKeysRequest) (*authv1.UploadPreKeysResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.allow("upload-prekeys", p.UserID); err != nil {
		return nil, err
	}
	var ik *keys.IdentityKey
	if err := s.view(ctx, "upload prekeys", func(tx kv.Tx) error {
		dev, err := loadDevice(tx, p.UserID, p.DeviceID)
		if isNotFound(err) {
			return abort(server.Error(codes.Unauthenticated, reasonDeviceRemoved, "device has been removed"))
		} else if err != nil {
			return err
		}
		ik, err = keys.ParseIdentityKey(dev.IdentityKey)
		return err
	}); err != nil {
		return nil, err
	}
	if err := verifyUpload(ik, req); err != nil {
		return nil, err
	}
	var counts *authv1.PreKeyCounts
	err = s.update(ctx, "upload prekeys", func(tx kv.Tx) error {
		if spk := req.GetSignedEcPrekey(); spk != nil {
			if err := putJSON(tx, perDevice("spk", p.UserID, p.DeviceID), signedKeyRecord{ID: spk.GetId(), PublicKey: spk.GetPublicKey(), Signature: spk.GetSignature(), CreatedAt: spk.GetCreatedAt()}); err != nil {
				return err
			}
		}
		if lrk := req.GetLastResortKemPrekey(); lrk != nil {
			if err := putJSON(tx, perDevice("lrk", p.UserID, p.DeviceID), signedKeyRecord{ID: lrk.GetId(), PublicKey: lrk.GetPublicKey(), Signature: lrk.GetSignature(), CreatedAt: lrk.GetCreatedAt()}); err != nil {
				return err
			}
		}
		for _, k := range []string{"spk", "lrk"} {
			if _, err := tx.Get(perDevice(k, p.UserID, p.DeviceID)); isNotFound(err) {
				return abort(server.Error(codes.FailedPrecondition, reasonNoSignedPreKey, "upload a signed EC prekey and a last-resort ML-KEM prekey first"))
			} else if err != nil {
				return err
			}
		}
		if err := checkSignedIDsFree(tx, p, req); err != nil {
			return err
		}
		for _, k := range req.GetOneTimeEcPrekeys() {
			if err := putPooled(tx, "otk", p, k.GetId(), k.GetPublicKey()); err != nil {
				return err
			}
		}
		for _, k := range req.GetOneTimeKemPrekeys() {
			rec := signedKeyRecord{ID: k.GetId(), PublicKey: k.GetPublicKey(), Signature: k.GetSignature(), CreatedAt: k.GetCreatedAt()}
			if err := putPooledJSON(tx, "kem", p, k.GetId(), rec); err != nil {
				return err
			}
		}
		var err error
		counts, err = preKeyCounts(tx, p.UserID, p.DeviceID)
		if err != nil {
			return err
		}
		if counts.OneTimeEcPrekeys > MaxPoolSize || counts.OneTimeKemPrekeys > MaxPoolSize {
			return abort(server.Error(codes.ResourceExhausted, reasonPreKeyLimitReached, "at most %d one-time prekeys of each kind may be stored", MaxPoolSize))
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &authv1.UploadPreKeysResponse{Counts: counts}, nil
}

// verifyUpload checks every key and signature of an upload before anything is stored.
func verifyUpload(ik *keys.IdentityKey, req *authv1.UploadPreKeysRequest) error {
	invalid := func(what string, err error) error {
		return server.Error(codes.InvalidArgument, reasonInvalidPreKey, "%s: %v", what, err)
	}
	badSig := func(what string) error {
		return server.Error(codes.InvalidArgument, reasonBadPreKeySignature, "%s: signature does not verify under the device identity key", what)
	}
	if spk := req.GetSignedEcPrekey(); spk != nil {
		pub, err := keys.ParseSignedPreKeyPublic(spk.GetId(), time.Unix(spk.GetCreatedAt(), 0), spk.GetPublicKey(), spk.GetSignature())
		if err != nil {
			return invalid("signed EC prekey", err)
		}
		if pub.Verify(ik) != nil {
			return badSig("signed EC prekey")
		}
	}
	if lrk := req.GetLastResortKemPrekey(); lrk != nil {
		pub, err := keys.ParseKEMPreKeyPublic(lrk.GetId(), time.Unix(lrk.GetCreatedAt(), 0), lrk.GetPublicKey(), true, lrk.GetSignature())
		if err != nil {
			return invalid("last-resort ML-KEM prekey", err)
		}
		if pub.Verify(ik) != nil {
			return badSig("last-resort ML-KEM prekey")
		}
	}
	// Ids are unique per device among the prekeys of a kind: the signed EC prekey shares
	// its id space with the one-time EC prekeys, the last-resort ML-KEM prekey with the
	// one-time ML-KEM prekeys.
	var ecIDs, kemIDs []uint32
	if spk := req.GetSignedEcPrekey(); spk != nil {
		ecIDs = append(ecIDs, spk.GetId())
	}
	if lrk := req.GetLastResortKemPrekey(); lrk != nil {
		kemIDs = append(kemIDs, lrk.GetId())
	}
	for _, k := range req.GetOneTimeEcPrekeys() {
		if _, err := keys.ParseOneTimePreKeyPublic(k.GetId(), k.GetPublicKey()); err != nil {
			return invalid(fmt.Sprintf("one-time EC prekey %d", k.GetId()), err)
		}
		ecIDs = append(ecIDs, k.GetId())
	}
	for _, k := range req.GetOneTimeKemPrekeys() {
		pub, err := keys.ParseKEMPreKeyPublic(k.GetId(), time.Unix(k.GetCreatedAt(), 0), k.GetPublicKey(), false, k.GetSignature())
		if err != nil {
			return invalid(fmt.Sprintf("one-time ML-KEM prekey %d", k.GetId()), err)
		}
		if pub.Verify(ik) != nil {
			return badSig(fmt.Sprintf("one-time ML-KEM prekey %d", k.GetId()))
		}
		kemIDs = append(kemIDs, k.GetId())
	}
	for _, ids := range [][]uint32{ecIDs, kemIDs} {
		slices.Sort(ids)
		for i := 1; i < len(ids); i++ {
			if ids[i] == ids[i-1] {
				return server.Error(codes.InvalidArgument, reasonDuplicatePreKeyID, "prekey id %d repeats in the request", ids[i])
			}
		}
	}
	return nil
}

// checkSignedIDsFree refuses ids that collide between a signed key and the one-time pool
// of its kind, whichever of the two is already stored.
func checkSignedIDsFree(tx kv.Tx, p authn.Principal, req *authv1.UploadPreKeysRequest) error {
	for _, kind := range []struct {
		signed, pool string
		oneTime      []uint32
	}{
		{"spk", "otk", idsOf(req.GetOneTimeEcPrekeys(), (*authv1.EcPreKey).GetId)},
		{"lrk", "kem", idsOf(req.GetOneTimeKemPrekeys(), (*authv1.SignedKemPreKey).GetId)},
	} {
		var signed signedKeyRecord
		if err := getJSON(tx, perDevice(kind.signed, p.UserID, p.DeviceID), &signed); err != nil {
			return err
		}
		if slices.Contains(kind.oneTime, signed.ID) {
			return abort(server.Error(codes.InvalidArgument, reasonDuplicatePreKeyID, "prekey id %d is the signed prekey's", signed.ID))
		}
		if _, err := tx.Get(pooledKey(kind.pool, p.UserID, p.DeviceID, uint64(signed.ID), 4)); err == nil {
			return abort(server.Error(codes.InvalidArgument, reasonDuplicatePreKeyID, "signed prekey id %d is a stored one-time prekey's", signed.ID))
		} else if !isNotFound(err) {
			return err
		}
	}
	return nil
}

func idsOf[T any](keys []T, id func(T) uint32) []uint32 {
	out := make([]uint32, len(keys))
	for i, k := range keys {
		out[i] = id(k)
	}
	return out
}

func putPooled(tx kv.Tx, kind string, p authn.Principal, id uint32, value []byte) error {
	key := pooledKey(kind, p.UserID, p.DeviceID, uint64(id), 4)
	if _, err := tx.Get(key); err == nil {
		return abort(server.Error(codes.InvalidArgument, reasonDuplicatePreKeyID, "a stored prekey already has id %d", id))
	} else if !isNotFound(err) {
		return err
	}
	return tx.Put(key, value)
}

func putPooledJSON(tx kv.Tx, kind string, p authn.Principal, id uint32, v any) error {
	key := pooledKey(kind, p.UserID, p.DeviceID, uint64(id), 4)
	if _, err := tx.Get(key); err == nil {
		return abort(server.Error(codes.InvalidArgument, reasonDuplicatePreKeyID, "a stored prekey already has id %d", id))
	} else if !isNotFound(err) {
		return err
	}
	return putJSON(tx, key, v)
}

func preKeyCounts(tx kv.Tx, user string, device uint32) (*authv1.PreKeyCounts, error) {
	ec, err := countPrefix(tx, perDevicePool("otk", user, device))
	if err != nil {
		return nil, err
	}
	kem, err := countPrefix(tx, perDevicePool("kem", user, device))
	if err != nil {
		return nil, err
	}
	_, spkErr := tx.Get(perDevice("spk", user, device))
	_, lrkErr := tx.Get(perDevice("lrk", user, device))
	return &authv1.PreKeyCounts{
		OneTimeEcPrekeys:       uint32(ec),
		OneTimeKemPrekeys:      uint32(kem),
		HasSignedEcPrekey:      spkErr == nil,
		HasLastResortKemPrekey: lrkErr == nil,
	}, nil
}

// GetPreKeyCounts reports the calling device's remaining one-time prekeys.
func (s *Server) GetPreKeyCounts(ctx context.Context, _ *authv1.GetPreKeyCountsRequest) (*authv1.GetPreKeyCountsResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.allow("account", p.UserID); err != nil {
		return nil, err
	}
	var counts *authv1.PreKeyCounts
	if err := s.view(ctx, "prekey counts", func(tx kv.Tx) error {
		counts, err = preKeyCounts(tx, p.UserID, p.DeviceID)
		return err
	}); err != nil {
		return nil, err
	}
	return &authv1.GetPreKeyCountsResponse{Counts: counts}, nil
}

// GetKeyBundles claims a bundle for each requested device of a user in one transaction.
func (s *Server) GetKeyBundles(ctx context.Context, req *authv1.GetKeyBundlesRequest) (*authv1.GetKeyBundlesResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.allow("bundles", p.UserID); err != nil {
		return nil, err
	}
	// One-time prekeys of a target are handed out at a bounded rate across all callers
	// (bundles-target), so that many accounts together cannot drain them, and each caller
	// gets a small share of that rate (bundles-pair), so that one caller cannot keep it
	// used up for everyone else: a caller past its share does not touch the target's
	// budget. Past either, bundles still come, with the last-resort ML-KEM key and no
	// one-time keys: sessions stay possible, the pool is left alone.
	claimOneTime := s.allow("bundles-pair", p.UserID+"|"+req.GetUserId()) == nil &&
		s.allow("bundles-target", req.GetUserId()) == nil
	type low struct {
		device   uint32
		ec, kems int
	}
	var lows []low
	resp := &authv1.GetKeyBundlesResponse{}
	err = s.update(ctx, "get key bundles", func(tx kv.Tx) error {
		resp.Bundles, resp.DevicesWithoutPrekeys, lows = nil, nil, nil
		if _, err := loadAccount(tx, req.GetUserId()); isNotFound(err) {
			return abort(server.Error(codes.NotFound, reasonUserNotFound, "no account %q", req.GetUserId()))
		} else if err != nil {
			return err
		}
		devs, err := loadDevices(tx, req.GetUserId())
		if err != nil {
			return err
		}
		wanted := devs
		if len(req.GetDeviceIds()) > 0 {
			wanted = nil
			for i, id := range req.GetDeviceIds() {
				if slices.Contains(req.GetDeviceIds()[:i], id) {
					return abort(server.Error(codes.InvalidArgument, reasonMalformedRequest, "device %d is requested twice", id))
				}
				j := slices.IndexFunc(devs, func(d deviceRecord) bool { return d.ID == id })
				if j < 0 {
					return abort(server.Error(codes.NotFound, reasonDeviceNotFound, "user has no device %d", id))
				}
				wanted = append(wanted, devs[j])
			}
		}
		for _, d := range wanted {
			bundle, ec, kems, err := s.claimBundle(tx, req.GetUserId(), d, claimOneTime)
			if err != nil {
				return err
			}
			if bundle == nil {
				resp.DevicesWithoutPrekeys = append(resp.DevicesWithoutPrekeys, d.ID)
				continue
			}
			resp.Bundles = append(resp.Bundles, bundle)
			if s.fellBelowThreshold(bundle, ec, kems) {
				// The claim read only the heads of the pools: count them for the owner.
				if ec, err = poolSize(tx, perDevicePool("otk", req.GetUserId(), d.ID)); err != nil {
					return err
				}
				if kems, err = poolSize(tx, perDevicePool("kem", req.GetUserId(), d.ID)); err != nil {
					return err
				}
				lows = append(lows, low{d.ID, ec, kems})
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	for _, l := range lows {
		s.publish(ctx, "prekeys low", func(e Events) error { return e.PreKeysLow(ctx, req.GetUserId(), l.device, l.ec, l.kems) })
	}
	return resp, nil
}

// fellBelowThreshold reports whether the claim of bundle, leaving ec and kems one-time
// prekeys, took a pool to just below the threshold or emptied it. The owner is told at
// those two points of each fall, not on every fetch while its pools are low (which let any
// caller flood the event stream); a fetch that claims no one-time key (an empty pool, or
// the per-target budget spent) changes nothing the owner has not been told.
func (s *Server) fellBelowThreshold(bundle *authv1.KeyBundle, ec, kems int) bool {
	t := s.cfg.LowPreKeyThreshold
	crossed := func(left int) bool { return left == t-1 || left == 0 }
	return bundle.GetOneTimeEcPrekey() != nil && crossed(ec) || !bundle.GetKemPrekeyIsLastResort() && crossed(kems)
}

// claimBundle takes one one-time EC prekey and one one-time ML-KEM prekey (or the
// last-resort one) of a device; with oneTime false it takes none and returns the
// last-resort ML-KEM key. It returns nil when the device has uploaded no signed prekeys
// yet, and the pool sizes left after the claim, exact below the low threshold and at
// least the threshold otherwise: it reads the heads of the pools only (threshold + 1
// keys), and nothing of them with oneTime false. Before, every fetch read both pools
// whole (up to 1000 ML-KEM keys, 2 MB), also for a caller past its share who gets none.
func (s *Server) claimBundle(tx kv.Tx, user string, d deviceRecord, oneTime bool) (*authv1.KeyBundle, int, int, error) {
	var spk, kem signedKeyRecord
	if err := getJSON(tx, perDevice("spk", user, d.ID), &spk); isNotFound(err) {
		return nil, 0, 0, nil
	} else if err != nil {
		return nil, 0, 0, err
	}
	bundle := &authv1.KeyBundle{
		DeviceId:       d.ID,
		IdentityKey:    d.IdentityKey,
		SignedEcPrekey: &authv1.SignedEcPreKey{Id: spk.ID, PublicKey: spk.PublicKey, Signature: spk.Signature, CreatedAt: spk.CreatedAt},
	}
	head := s.cfg.LowPreKeyThreshold + 1
	var ecs, kems []kv.Pair
	var err error
	ecPool := perDevicePool("otk", user, d.ID)
	if oneTime {
		if ecs, err = tx.Scan(ecPool, kv.PrefixEnd(ecPool), head); err != nil {
			return nil, 0, 0, err
		}
	}
	if len(ecs) > 0 {
		id := binary.BigEndian.Uint32(ecs[0].Key[len(ecPool):])
		bundle.OneTimeEcPrekey = &authv1.EcPreKey{Id: id, PublicKey: ecs[0].Value}
		if err := tx.Delete(ecs[0].Key); err != nil {
			return nil, 0, 0, err
		}
		ecs = ecs[1:]
	}
	kemPool := perDevicePool("kem", user, d.ID)
	if oneTime {
		if kems, err = tx.Scan(kemPool, kv.PrefixEnd(kemPool), head); err != nil {
			return nil, 0, 0, err
		}
	}
	if len(kems) > 0 {
		if err := decodeJSON(kems[0].Value, &kem); err != nil {
			return nil, 0, 0, err
		}
		if err := tx.Delete(kems[0].Key); err != nil {
			return nil, 0, 0, err
		}
		kems = kems[1:]
	} else {
		if err := getJSON(tx, perDevice("lrk", user, d.ID), &kem); isNotFound(err) {
			return nil, 0, 0, nil
		} else if err != nil {
			return nil, 0, 0, err
		}
		bundle.KemPrekeyIsLastResort = true
	}
	bundle.KemPrekey = &authv1.SignedKemPreKey{Id: kem.ID, PublicKey: kem.PublicKey, Signature: kem.Signature, CreatedAt: kem.CreatedAt}
	return bundle, len(ecs), len(kems), nil
}

// poolSize counts the keys of a one-time prekey pool.
func poolSize(tx kv.Tx, pool []byte) (int, error) {
	keys, err := tx.Scan(pool, kv.PrefixEnd(pool), 0)
	return len(keys), err
}

// UploadKeyPackages adds MLS key packages to the calling device's pool.
func (s *Server) UploadKeyPackages(ctx context.Context, req *authv1.UploadKeyPackagesRequest) (*authv1.UploadKeyPackagesResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.allow("upload-key-packages", p.UserID); err != nil {
		return nil, err
	}
	if len(req.GetKeyPackages()) == 0 || slices.ContainsFunc(req.GetKeyPackages(), func(b []byte) bool { return len(b) == 0 }) {
		return nil, server.Error(codes.InvalidArgument, reasonMalformedRequest, "send at least one non-empty key package")
	}
	var count int
	err = s.update(ctx, "upload key packages", func(tx kv.Tx) error {
		pool := perDevicePool("kp", p.UserID, p.DeviceID)
		existing, err := tx.Scan(pool, kv.PrefixEnd(pool), 0)
		if err != nil {
			return err
		}
		count = len(existing) + len(req.GetKeyPackages())
		if count > MaxPoolSize {
			return abort(server.Error(codes.ResourceExhausted, reasonKeyPackageLimitReached, "at most %d key packages may be stored", MaxPoolSize))
		}
		var next uint64
		if len(existing) > 0 {
			last := existing[len(existing)-1].Key
			next = binary.BigEndian.Uint64(last[len(pool):]) + 1
		}
		for i, kp := range req.GetKeyPackages() {
			if err := tx.Put(pooledKey("kp", p.UserID, p.DeviceID, next+uint64(i), 8), kp); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return &authv1.UploadKeyPackagesResponse{Count: uint32(count)}, nil
}

// ClaimKeyPackages claims one key package of every device of a user.
func (s *Server) ClaimKeyPackages(ctx context.Context, req *authv1.ClaimKeyPackagesRequest) (*authv1.ClaimKeyPackagesResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.allow("claim-key-packages", p.UserID); err != nil {
		return nil, err
	}
	// As for prekey bundles: a target's key packages go out at a bounded rate, of which
	// each caller gets a small share, checked first so that a caller past its share
	// leaves the target's budget to others.
	if err := s.allow("claim-key-packages-pair", p.UserID+"|"+req.GetUserId()); err != nil {
		return nil, err
	}
	if err := s.allow("claim-key-packages-target", req.GetUserId()); err != nil {
		return nil, err
	}
	resp := &authv1.ClaimKeyPackagesResponse{}
	err = s.update(ctx, "claim key packages", func(tx kv.Tx) error {
		resp.KeyPackages, resp.DevicesWithoutKeyPackages = nil, nil
		if _, err := loadAccount(tx, req.GetUserId()); isNotFound(err) {
			return abort(server.Error(codes.NotFound, reasonUserNotFound, "no account %q", req.GetUserId()))
		} else if err != nil {
			return err
		}
		devs, err := loadDevices(tx, req.GetUserId())
		if err != nil {
			return err
		}
		for _, d := range devs {
			pool := perDevicePool("kp", req.GetUserId(), d.ID)
			first, err := tx.Scan(pool, kv.PrefixEnd(pool), 1)
			if err != nil {
				return err
			}
			if len(first) == 0 {
				resp.DevicesWithoutKeyPackages = append(resp.DevicesWithoutKeyPackages, d.ID)
				continue
			}
			if err := tx.Delete(first[0].Key); err != nil {
				return err
			}
			resp.KeyPackages = append(resp.KeyPackages, &authv1.ClaimedKeyPackage{DeviceId: d.ID, KeyPackage: first[0].Value})
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return resp, nil
}

// CountKeyPackages reports the calling device's unclaimed key packages.
func (s *Server) CountKeyPackages(ctx context.Context, _ *authv1.CountKeyPackagesRequest) (*authv1.CountKeyPackagesResponse, error) {
	p, err := caller(ctx)
	if err != nil {
		return nil, err
	}
	if err := s.allow("account", p.UserID); err != nil {
		return nil, err
	}
	var n int
	if err := s.view(ctx, "count key packages", func(tx kv.Tx) error {
		n, err = countPrefix(tx, perDevicePool("kp", p.UserID, p.DeviceID))
		return err
	}); err != nil {
		return nil, err
	}
	return &authv1.CountKeyPackagesResponse{Count: uint32(n)}, nil
}
