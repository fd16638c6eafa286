package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"strings"
	"time"

	"github.com/nats-io/nats.go"
)

// MaxReplicas is the largest stream replica count JetStream accepts.
const MaxReplicas = 5

// ClusterOptions says how to reach an external NATS cluster with JetStream:
// the same subjects, streams and buckets as the embedded server, each stream
// and bucket kept on Replicas servers.
type ClusterOptions struct {
	// URLs lists seed servers, comma-separated (nats://a:4222,nats://b:4222;
	// tls:// to require TLS). The client learns the rest of the cluster from
	// them and reconnects to any member for ever once connected.
	URLs string

	// At most one way to authenticate: a creds file (JWT + nkey seed, as
	// `nsc` writes it), a user and password, or a token.
	CredsFile string
	User      string
	Password  string
	Token     string

	// CAFile verifies the servers' certificates (PEM); CertFile and KeyFile,
	// both or neither, present a client certificate for mutual TLS.
	CAFile   string
	CertFile string
	KeyFile  string

	// Replicas is how many servers keep each stream and bucket: 1 (0 means 1)
	// loses them with one server; 3 survives the loss of any one server of a
	// three-server cluster. At most MaxReplicas.
	Replicas int

	// Timeout bounds dialling each seed; 0 means 5s. A cluster none of whose
	// seeds answers at start is an error: the process should not start
	// without its bus.
	Timeout time.Duration

	Logger *slog.Logger // nil: discard
}

// Validate checks the options without dialling.
func (o ClusterOptions) Validate() error {
	var errs []error
	if strings.TrimSpace(o.URLs) == "" {
		errs = append(errs, errors.New("nats: no server URL"))
	}
	for _, u := range strings.Split(o.URLs, ",") {
		if u = strings.TrimSpace(u); u == "" {
			continue
		}
		if _, err := url.Parse(u); err != nil {
			errs = append(errs, fmt.Errorf("nats: server URL %q: not a URL", redactURL(u)))
		}
	}
	methods := 0
	for _, set := range []bool{o.CredsFile != "", o.User != "" || o.Password != "", o.Token != ""} {
		if set {
			methods++
		}
	}
	if methods > 1 {
		errs = append(errs, errors.New("nats: give one of creds file, user and password, or token"))
	}
	if (o.User == "") != (o.Password == "") {
		errs = append(errs, errors.New("nats: user and password go together"))
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		errs = append(errs, errors.New("nats: client certificate and key go together"))
	}
	if o.Replicas < 0 || o.Replicas > MaxReplicas {
		errs = append(errs, fmt.Errorf("nats: replicas %d: want 1..%d", o.Replicas, MaxReplicas))
	}
	return errors.Join(errs...)
}

// natsOptions turns the credentials and TLS settings into client options.
func (o ClusterOptions) natsOptions() []nats.Option {
	var opts []nats.Option
	switch {
	case o.CredsFile != "":
		opts = append(opts, nats.UserCredentials(o.CredsFile))
	case o.User != "":
		opts = append(opts, nats.UserInfo(o.User, o.Password))
	case o.Token != "":
		opts = append(opts, nats.Token(o.Token))
	}
	if o.CAFile != "" {
		opts = append(opts, nats.RootCAs(o.CAFile))
	}
	if o.CertFile != "" {
		opts = append(opts, nats.ClientCert(o.CertFile, o.KeyFile))
	}
	timeout := o.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	return append(opts, nats.Timeout(timeout))
}

// Dial connects to the NATS cluster o describes and checks that JetStream
// answers before returning: a cluster that is unreachable, refuses the
// credentials or runs without JetStream is an error naming NATS and the
// (redacted) seeds, so a service fails at start rather than at its first
// durable event. Once connected the Bus reconnects for ever.
func Dial(ctx context.Context, o ClusterOptions) (*Bus, error) {
	if err := o.Validate(); err != nil {
		return nil, err
	}
	seeds := redactURLs(o.URLs)
	b, err := Connect(o.URLs, o.Logger, o.natsOptions()...)
	if err != nil {
		return nil, fmt.Errorf("nats cluster %s unreachable: %w", seeds, err)
	}
	b.replicas = max(o.Replicas, 1)
	actx, cancel := context.WithTimeout(ctx, readyWait(ctx))
	defer cancel()
	if _, err := b.js.AccountInfo(actx); err != nil {
		b.Close()
		return nil, fmt.Errorf("nats cluster %s: jetstream unavailable: %w", seeds, err)
	}
	return b, nil
}

// Replicas is how many servers keep each stream and bucket this Bus creates.
func (b *Bus) Replicas() int { return max(b.replicas, 1) }

func redactURLs(urls string) string {
	var out []string
	for _, u := range strings.Split(urls, ",") {
		if u = strings.TrimSpace(u); u != "" {
			out = append(out, redactURL(u))
		}
	}
	return strings.Join(out, ",")
}

// redactURL drops any user information from a server URL so that errors and
// logs never carry a password or token.
func redactURL(s string) string {
	u, err := url.Parse(s)
	if err != nil {
		if i := strings.LastIndex(s, "@"); i >= 0 {
			return "<redacted>" + s[i:]
		}
		return s
	}
	if u.User != nil {
		u.User = url.User("redacted")
	}
	return u.String()
}
