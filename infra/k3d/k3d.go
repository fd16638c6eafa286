// Package k3d checks infra/k3d/cluster.yaml against k3d's v1alpha5 Simple
// config. The k3d Go module is not available here, so its own validator is out
// of reach: Config restates the fields k3d documents for v1alpha5
// (https://k3d.io/stable/usage/configfile, the schema.json of
// pkg/config/v1alpha5), and Parse refuses any field k3d does not know, a wrong
// type, or a value outside the documented enums and formats. Check then adds
// what Guardyn needs of its local cluster (the seed's shape).
package k3d

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

// Config is the v1alpha5 Simple config, field for field.
type Config struct {
	APIVersion  string      `yaml:"apiVersion"`
	Kind        string      `yaml:"kind"`
	Metadata    *Metadata   `yaml:"metadata,omitempty"`
	Servers     *int        `yaml:"servers,omitempty"`
	Agents      *int        `yaml:"agents,omitempty"`
	KubeAPI     *KubeAPI    `yaml:"kubeAPI,omitempty"`
	Image       string      `yaml:"image,omitempty"`
	Network     string      `yaml:"network,omitempty"`
	Subnet      string      `yaml:"subnet,omitempty"`
	Token       string      `yaml:"token,omitempty"`
	Volumes     []Filtered  `yaml:"volumes,omitempty"`
	Manifests   []Manifest  `yaml:"manifests,omitempty"`
	Ports       []Filtered  `yaml:"ports,omitempty"`
	Options     *Options    `yaml:"options,omitempty"`
	Env         []Filtered  `yaml:"env,omitempty"`
	Registries  *Registries `yaml:"registries,omitempty"`
	HostAliases []HostAlias `yaml:"hostAliases,omitempty"`
}

// Metadata names the cluster (k3d prefixes it with "k3d-").
type Metadata struct {
	Name string `yaml:"name,omitempty"`
}

// KubeAPI is where the API server is published on the host.
type KubeAPI struct {
	Host     string `yaml:"host,omitempty"`
	HostIP   string `yaml:"hostIP,omitempty"`
	HostPort string `yaml:"hostPort,omitempty"`
}

// Filtered is a value applied to the nodes its node filters select: k3d
// spells the value volume, port, envVar, arg or label depending on the list.
type Filtered struct {
	Volume      string   `yaml:"volume,omitempty"`
	Port        string   `yaml:"port,omitempty"`
	EnvVar      string   `yaml:"envVar,omitempty"`
	Arg         string   `yaml:"arg,omitempty"`
	Label       string   `yaml:"label,omitempty"`
	NodeFilters []string `yaml:"nodeFilters,omitempty"`
}

// Manifest is an auto-deployed manifest of k3s.
type Manifest struct {
	Name     string `yaml:"name,omitempty"`
	Manifest string `yaml:"manifest,omitempty"`
}

// Options are the k3d, k3s, kubeconfig and runtime options.
type Options struct {
	K3d        *K3dOptions        `yaml:"k3d,omitempty"`
	K3s        *K3sOptions        `yaml:"k3s,omitempty"`
	Kubeconfig *KubeconfigOptions `yaml:"kubeconfig,omitempty"`
	Runtime    *RuntimeOptions    `yaml:"runtime,omitempty"`
}

// K3dOptions steer k3d itself.
type K3dOptions struct {
	Wait                *bool         `yaml:"wait,omitempty"`
	Timeout             string        `yaml:"timeout,omitempty"`
	DisableLoadbalancer *bool         `yaml:"disableLoadbalancer,omitempty"`
	DisableImageVolume  *bool         `yaml:"disableImageVolume,omitempty"`
	DisableRollback     *bool         `yaml:"disableRollback,omitempty"`
	Loadbalancer        *Loadbalancer `yaml:"loadbalancer,omitempty"`
}

// Loadbalancer tunes the k3d-proxy container.
type Loadbalancer struct {
	ConfigOverrides []string `yaml:"configOverrides,omitempty"`
}

// K3sOptions pass arguments and labels to k3s.
type K3sOptions struct {
	ExtraArgs  []Filtered `yaml:"extraArgs,omitempty"`
	NodeLabels []Filtered `yaml:"nodeLabels,omitempty"`
}

// KubeconfigOptions say what k3d does to the user's kubeconfig.
type KubeconfigOptions struct {
	UpdateDefaultKubeconfig *bool `yaml:"updateDefaultKubeconfig,omitempty"`
	SwitchCurrentContext    *bool `yaml:"switchCurrentContext,omitempty"`
}

// RuntimeOptions are passed to the container runtime.
type RuntimeOptions struct {
	GPURequest    string     `yaml:"gpuRequest,omitempty"`
	ServersMemory string     `yaml:"serversMemory,omitempty"`
	AgentsMemory  string     `yaml:"agentsMemory,omitempty"`
	HostPidMode   *bool      `yaml:"hostPidMode,omitempty"`
	Labels        []Filtered `yaml:"labels,omitempty"`
	Ulimits       []Ulimit   `yaml:"ulimits,omitempty"`
}

// Ulimit is one container ulimit.
type Ulimit struct {
	Name string `yaml:"name,omitempty"`
	Soft *int   `yaml:"soft,omitempty"`
	Hard *int   `yaml:"hard,omitempty"`
}

// Registries creates a registry beside the cluster and/or connects others.
type Registries struct {
	Create *RegistryCreate `yaml:"create,omitempty"`
	Use    []string        `yaml:"use,omitempty"`
	Config string          `yaml:"config,omitempty"`
}

// RegistryCreate describes the registry k3d creates.
type RegistryCreate struct {
	Name     string         `yaml:"name,omitempty"`
	Host     string         `yaml:"host,omitempty"`
	HostPort string         `yaml:"hostPort,omitempty"`
	Image    string         `yaml:"image,omitempty"`
	Proxy    *RegistryProxy `yaml:"proxy,omitempty"`
	Volumes  []string       `yaml:"volumes,omitempty"`
}

// RegistryProxy makes the created registry a pull-through cache.
type RegistryProxy struct {
	RemoteURL string `yaml:"remoteURL,omitempty"`
	Username  string `yaml:"username,omitempty"`
	Password  string `yaml:"password,omitempty"`
}

// HostAlias maps an IP to host names inside the nodes.
type HostAlias struct {
	IP        string   `yaml:"ip,omitempty"`
	Hostnames []string `yaml:"hostnames,omitempty"`
}

var (
	hostnameRE   = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$`)
	nodeFilterRE = regexp.MustCompile(`^(server|servers|agent|agents|loadbalancer|all)(:(\*|\d+(-\d+)?(,\d+(-\d+)?)*))?(:[a-z]+)?$`)
)

// Parse decodes a v1alpha5 Simple config strictly: an unknown field, a
// value of the wrong type or a value outside k3d's documented enums and
// formats is an error naming the field.
func Parse(data []byte) (*Config, error) {
	var c Config
	if err := strictYAML(data, &c); err != nil {
		return nil, fmt.Errorf("k3d config: %w", err)
	}
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("k3d config: "+format, args...)) }
	if c.APIVersion != "k3d.io/v1alpha5" {
		bad("apiVersion %q: want k3d.io/v1alpha5", c.APIVersion)
	}
	if c.Kind != "Simple" {
		bad("kind %q: want Simple", c.Kind)
	}
	if c.Metadata != nil && c.Metadata.Name != "" && !hostnameRE.MatchString(c.Metadata.Name) {
		bad("metadata.name %q: not a hostname", c.Metadata.Name)
	}
	if c.Servers != nil && *c.Servers < 1 {
		bad("servers %d: want at least 1", *c.Servers)
	}
	if c.Agents != nil && *c.Agents < 0 {
		bad("agents %d: want at least 0", *c.Agents)
	}
	if k := c.KubeAPI; k != nil {
		if k.Host != "" && !hostnameRE.MatchString(k.Host) {
			bad("kubeAPI.host %q: not a hostname", k.Host)
		}
		if k.HostIP != "" && (net.ParseIP(k.HostIP) == nil || net.ParseIP(k.HostIP).To4() == nil) {
			bad("kubeAPI.hostIP %q: not an IPv4 address", k.HostIP)
		}
		if k.HostPort != "" && !isPort(k.HostPort) {
			bad("kubeAPI.hostPort %q: not a port", k.HostPort)
		}
	}
	filters := func(field string, list []Filtered, value func(Filtered) string, others func(Filtered) bool) {
		for i, f := range list {
			if value(f) == "" {
				bad("%s[%d]: empty value", field, i)
			}
			if others(f) {
				bad("%s[%d]: a field k3d does not define for %s", field, i, field)
			}
			for _, nf := range f.NodeFilters {
				if !nodeFilterRE.MatchString(nf) {
					bad("%s[%d].nodeFilters %q: not a k3d node filter (group[:subset][:suffix])", field, i, nf)
				}
			}
		}
	}
	only := func(keep string) func(Filtered) bool {
		return func(f Filtered) bool {
			set := map[string]string{"volume": f.Volume, "port": f.Port, "envVar": f.EnvVar, "arg": f.Arg, "label": f.Label}
			for k, v := range set {
				if k != keep && v != "" {
					return true
				}
			}
			return false
		}
	}
	filters("volumes", c.Volumes, func(f Filtered) string { return f.Volume }, only("volume"))
	filters("ports", c.Ports, func(f Filtered) string { return f.Port }, only("port"))
	filters("env", c.Env, func(f Filtered) string { return f.EnvVar }, only("envVar"))
	if o := c.Options; o != nil {
		if o.K3s != nil {
			filters("options.k3s.extraArgs", o.K3s.ExtraArgs, func(f Filtered) string { return f.Arg }, only("arg"))
			filters("options.k3s.nodeLabels", o.K3s.NodeLabels, func(f Filtered) string { return f.Label }, only("label"))
		}
		if o.Runtime != nil {
			filters("options.runtime.labels", o.Runtime.Labels, func(f Filtered) string { return f.Label }, only("label"))
		}
	}
	for i, p := range c.Ports {
		if !portMappingOK(p.Port) {
			bad("ports[%d] %q: want [HOST:]HOSTPORT:CONTAINERPORT[/PROTOCOL]", i, p.Port)
		}
	}
	if r := c.Registries; r != nil && r.Create != nil {
		if r.Create.HostPort != "" && r.Create.HostPort != "random" && !isPort(r.Create.HostPort) {
			bad("registries.create.hostPort %q: not a port", r.Create.HostPort)
		}
		if r.Create.Name != "" && !hostnameRE.MatchString(r.Create.Name) {
			bad("registries.create.name %q: not a hostname", r.Create.Name)
		}
	}
	if r := c.Registries; r != nil && r.Config != "" {
		var cfg struct {
			Mirrors map[string]struct {
				Endpoint []string `yaml:"endpoint"`
			} `yaml:"mirrors"`
			Configs map[string]any `yaml:"configs"`
		}
		if err := strictYAML([]byte(r.Config), &cfg); err != nil {
			bad("registries.config: not a k3s registries.yaml: %v", err)
		}
	}
	if err := errors.Join(errs...); err != nil {
		return nil, err
	}
	return &c, nil
}

// strictYAML decodes one YAML document into v, refusing fields v does not
// declare. Field names match exactly, as k3d's JSON schema does (a decoder
// that folds case would accept "hostport" for "hostPort").
func strictYAML(data []byte, v any) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(v); err != nil {
		return err
	}
	return nil
}

func isPort(s string) bool {
	n, err := strconv.Atoi(s)
	return err == nil && n > 0 && n < 65536
}

func portMappingOK(s string) bool {
	s, _, _ = strings.Cut(s, "/")
	parts := strings.Split(s, ":")
	if len(parts) < 2 || len(parts) > 3 {
		return false
	}
	for _, p := range parts[len(parts)-2:] {
		if !isPort(p) {
			return false
		}
	}
	return true
}

// Check is what Guardyn needs of its local cluster beyond a valid config:
// the seed's 3 servers and 2 agents, the registry guardyn-registry on host
// port 5000, the load balancer on 80 and 443, and k3s' flannel and network
// policy controller off so that Cilium is the CNI and enforces the policies.
func Check(c *Config) error {
	var errs []error
	bad := func(format string, args ...any) { errs = append(errs, fmt.Errorf("k3d cluster: "+format, args...)) }
	if c.Servers == nil || *c.Servers != 3 {
		bad("want servers: 3 (embedded etcd needs an odd number, the seed runs 3)")
	}
	if c.Agents == nil || *c.Agents != 2 {
		bad("want agents: 2")
	}
	if c.Image == "" || strings.HasSuffix(c.Image, ":latest") || !strings.Contains(c.Image, ":") {
		bad("image %q: pin a k3s version", c.Image)
	}
	if c.Registries == nil || c.Registries.Create == nil || c.Registries.Create.Name != "guardyn-registry" || c.Registries.Create.HostPort != "5000" {
		bad("want registries.create named guardyn-registry on host port 5000")
	} else if !strings.Contains(c.Registries.Config, `"guardyn-registry:5000"`) {
		bad("registries.config: want a mirror for guardyn-registry:5000, the name the manifests use")
	}
	for _, port := range []string{"80", "443"} {
		if !slices.ContainsFunc(c.Ports, func(f Filtered) bool {
			return strings.HasPrefix(f.Port, port+":") && slices.Contains(f.NodeFilters, "loadbalancer")
		}) {
			bad("want port %s published on the loadbalancer", port)
		}
	}
	var args []Filtered
	if c.Options != nil && c.Options.K3s != nil {
		args = c.Options.K3s.ExtraArgs
	}
	for _, want := range []string{"--flannel-backend=none", "--disable-network-policy"} {
		if !slices.ContainsFunc(args, func(f Filtered) bool {
			return f.Arg == want && slices.Contains(f.NodeFilters, "server:*")
		}) {
			bad("want k3s arg %s on every server (server:*): Cilium replaces it", want)
		}
	}
	return errors.Join(errs...)
}

// Load parses and checks a cluster config.
func Load(data []byte) (*Config, error) {
	c, err := Parse(bytes.TrimSpace(data))
	if err != nil {
		return nil, err
	}
	return c, Check(c)
}
