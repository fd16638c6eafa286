"""The release bundle as a Bazel target: `bazel build //release:bundle`.

The release tool is its own Go module whose ~1000 dependencies are not in
go_deps (they would change the product's Bazel build), so Bazel cannot build
it from its own repositories. This rule runs the same tool the same way the
documented command does (`go run ./release build`, docs/release.md) with the
Go SDK of MODULE.bazel, in a local action: the release reads the git
checkout (commit, commit time, clean tree) and the Go module cache, so it
cannot run in the sandbox. The bundle's bytes are the same as from the go
command: the tool pins every build setting itself.
"""

ReleaseSettingInfo = provider(
    doc = "The value of a string build setting of the release.",
    fields = {"value": "the flag's value"},
)

def _setting_impl(ctx):
    return [ReleaseSettingInfo(value = ctx.build_setting_value)]

release_setting = rule(
    implementation = _setting_impl,
    build_setting = config.string(flag = True),
    doc = "A string flag, e.g. --//release:version=v0.3.0.",
)

def _bundle_impl(ctx):
    version = ctx.attr.version[ReleaseSettingInfo].value
    key = ctx.attr.key[ReleaseSettingInfo].value
    if not version or not key:
        fail("set --//release:version=vX.Y.Z and --//release:key=/absolute/path/cosign.key (passphrase: COSIGN_PASSWORD in --action_env)")
    sdk = ctx.toolchains["@rules_go//go:toolchain"].sdk
    out = ctx.actions.declare_directory(ctx.label.name)
    ctx.actions.run_shell(
        inputs = depset([ctx.file.gomod, sdk.go], transitive = [sdk.srcs, sdk.tools, sdk.libs, sdk.headers]),
        outputs = [out],
        arguments = [sdk.go.path, ctx.file.gomod.path, version, key, out.path],
        command = """
set -eu
go="$PWD/$1"
root="$(cd "$(dirname "$(readlink -f "$2")")/.." && pwd)"
out="$PWD/$5"
GOWORK=off "$go" -C "$root/release" build -o "$out/.release-tool" .
cd "$root"
"$out/.release-tool" build --version "$3" --key "$4" --out "$out"
rm -f "$out/.release-tool"
""",
        execution_requirements = {
            "local": "1",
            "no-cache": "1",
            "no-remote": "1",
            "no-sandbox": "1",
            "requires-network": "1",
        },
        mnemonic = "GuardynRelease",
        progress_message = "Building the Guardyn release bundle %s" % version,
        use_default_shell_env = True,
    )
    return [DefaultInfo(files = depset([out]))]

release_bundle = rule(
    implementation = _bundle_impl,
    attrs = {
        "gomod": attr.label(allow_single_file = True, doc = "release/go.mod, which locates the checkout"),
        "key": attr.label(mandatory = True, providers = [ReleaseSettingInfo]),
        "version": attr.label(mandatory = True, providers = [ReleaseSettingInfo]),
    },
    toolchains = ["@rules_go//go:toolchain"],
    doc = "Runs the release tool (release/) and outputs its bundle directory and tarball.",
)
