package presence

import (
	"context"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	presencev1 "github.com/guardyn/guardyn/proto/guardyn/presence/v1"
)

// frames shares the response one account's change sends across all the watches of it, so
// a change fanned out to n watches builds its response (and, for an account gone offline,
// reads its stored last seen) once, not n times. Each watch sees the same read-only
// message; gRPC marshals it per stream, which protobuf allows concurrently.
//
// Only the account's side is shared: whether a viewer may see the account is still decided
// per watch, per change, so privacy semantics are those of presenceOf.
type frames struct {
	mu sync.Mutex
	m  map[string]*frame // by account token, while some watch here names it
}

// frame is the latest response built for one account.
type frame struct {
	refs int // watches naming the account; guarded by frames.mu

	mu      sync.Mutex
	built   bool
	userID  string
	acct    account
	minute  time.Time // for an online account, the minute its LastSeen says
	visible *presencev1.WatchPresenceResponse
	hidden  *presencev1.WatchPresenceResponse
}

func newFrames() *frames { return &frames{m: make(map[string]*frame)} }

// acquire returns the frames of the tokens a watch names, creating missing ones.
func (f *frames) acquire(tokens map[string]string) map[string]*frame {
	out := make(map[string]*frame, len(tokens))
	f.mu.Lock()
	defer f.mu.Unlock()
	for token := range tokens {
		fr := f.m[token]
		if fr == nil {
			fr = &frame{}
			f.m[token] = fr
		}
		fr.refs++
		out[token] = fr
	}
	return out
}

// release forgets the frames no watch names any more.
func (f *frames) release(tokens map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for token := range tokens {
		if fr := f.m[token]; fr != nil {
			if fr.refs--; fr.refs == 0 {
				delete(f.m, token)
			}
		}
	}
}

// response is what a viewer watching owner gets now: the shared visible response, rebuilt
// only when the account's presence (or, while it is online, the minute) changed since it
// was built, or the shared hidden one.
func (fr *frame) response(ctx context.Context, s *Server, viewer, owner, token string) (*presencev1.WatchPresenceResponse, error) {
	ok, err := s.privacy.visible(ctx, viewer, owner)
	if err != nil {
		return nil, err
	}
	fr.mu.Lock()
	defer fr.mu.Unlock()
	if fr.userID != owner {
		// Tokens are injective, so every watch of one token names the same user id; this
		// only guards the cache against a change of that rule.
		fr.built, fr.userID = false, owner
		fr.hidden = &presencev1.WatchPresenceResponse{Presence: &presencev1.Presence{UserId: owner}}
	}
	if !ok {
		return fr.hidden, nil
	}
	a := s.view.account(token)
	online := a.status != presencev1.PresenceStatus_PRESENCE_STATUS_OFFLINE
	var minute time.Time
	if online {
		minute = s.now().Truncate(time.Minute)
	}
	if fr.built && sameAccount(fr.acct, a) && fr.acct.lastSeen.Equal(a.lastSeen) && fr.minute.Equal(minute) {
		return fr.visible, nil
	}
	pr := &presencev1.Presence{UserId: owner, Status: a.status}
	if online {
		pr.SealedStatus = a.sealed
		pr.LastSeen = timestamppb.New(minute)
	} else {
		at := a.lastSeen
		if at.IsZero() {
			stored, err := s.storedLastSeen(ctx, []string{token})
			if err != nil {
				fr.built = false
				return nil, err
			}
			at = stored[token]
		}
		if !at.IsZero() {
			pr.LastSeen = timestamppb.New(at.Truncate(time.Minute))
		}
	}
	fr.built, fr.acct, fr.minute = true, a, minute
	fr.visible = &presencev1.WatchPresenceResponse{Presence: pr}
	return fr.visible, nil
}
