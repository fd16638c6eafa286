# The nixpkgs lib functions Guardyn's flake calls, with nixpkgs' semantics.
{
  genAttrs = names: f: builtins.listToAttrs (map (n: { name = n; value = f n; }) names);

  fileContents = file:
    let s = builtins.readFile file;
    in if builtins.substring (builtins.stringLength s - 1) 1 s == "\n"
    then builtins.substring 0 (builtins.stringLength s - 1) s
    else s;
}
