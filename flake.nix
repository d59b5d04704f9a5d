{
  description = "koji-adjutant: a kojid replacement that runs koji tasks in ephemeral podman containers";

  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-24.11";

  outputs = { self, nixpkgs }:
    let
      systems = [ "x86_64-linux" "aarch64-linux" ];
      forAll = f: nixpkgs.lib.genAttrs systems (system: f nixpkgs.legacyPackages.${system});
    in {
      packages = forAll (pkgs: rec {
        # importNpmLock reads package-lock.json directly, so no npmDepsHash has to be kept in
        # step with the lock file: the lock's integrity hashes pin every dependency.
        koji-adjutant = pkgs.buildNpmPackage {
          pname = "koji-adjutant";
          version = (builtins.fromJSON (builtins.readFile ./package.json)).version;
          src = pkgs.lib.cleanSourceWith {
            src = ./.;
            filter = path: type:
              let base = baseNameOf path; in
              !(builtins.elem base [ "node_modules" "dist" ".git" "result" ]);
          };
          nodejs = pkgs.nodejs_20;
          npmDeps = pkgs.importNpmLock { npmRoot = ./.; };
          npmConfigHook = pkgs.importNpmLock.npmConfigHook;
          npmBuildScript = "build";
          # Tests need podman and root; they run in CI (.ci/run), not in the sandbox.
          doCheck = false;
          postInstall = ''
            mkdir -p $out/bin
            makeWrapper ${pkgs.nodejs_20}/bin/node $out/bin/koji-adjutant \
              --add-flags $out/lib/node_modules/koji-adjutant/dist/main.js \
              --prefix PATH : ${pkgs.lib.makeBinPath [ pkgs.podman ]} \
              --prefix LD_LIBRARY_PATH : ${pkgs.lib.makeLibraryPath [ pkgs.krb5 ]}
          '';
          # The optional `kerberos` addon (GSSAPI login) is compiled by node-gyp against MIT
          # krb5's headers; at run time it dlopen()s libgssapi_krb5.so.2, hence LD_LIBRARY_PATH.
          nativeBuildInputs = [ pkgs.makeWrapper pkgs.python3 pkgs.pkg-config ];
          buildInputs = [ pkgs.krb5 ];
          meta = {
            description = "Build host daemon for koji running tasks in podman containers";
            license = pkgs.lib.licenses.lgpl21Plus;
            mainProgram = "koji-adjutant";
            platforms = pkgs.lib.platforms.linux;
          };
        };
        default = koji-adjutant;
      });

      devShells = forAll (pkgs: {
        default = pkgs.mkShell {
          packages = [ pkgs.nodejs_20 pkgs.podman pkgs.runc pkgs.conmon pkgs.debootstrap pkgs.git pkgs.openssl
                       pkgs.krb5 pkgs.python3 pkgs.pkg-config ];
        };
      });

      # NixOS: services.koji-adjutant.enable = true; reads /etc/kojid/kojid.conf like kojid.
      nixosModules.default = { config, lib, pkgs, ... }:
        let cfg = config.services.koji-adjutant; in {
          options.services.koji-adjutant = {
            enable = lib.mkEnableOption "koji-adjutant build host daemon";
            package = lib.mkOption {
              type = lib.types.package;
              default = self.packages.${pkgs.system}.default;
              description = "koji-adjutant package to run.";
            };
            configFile = lib.mkOption {
              type = lib.types.path;
              default = "/etc/kojid/kojid.conf";
              description = "kojid.conf with [kojid] and [adjutant] sections.";
            };
          };
          config = lib.mkIf cfg.enable {
            virtualisation.podman.enable = true;
            systemd.services.koji-adjutant = {
              description = "koji build host (koji-adjutant)";
              wantedBy = [ "multi-user.target" ];
              after = [ "network-online.target" "podman.socket" ];
              wants = [ "network-online.target" "podman.socket" ];
              serviceConfig = {
                ExecStart = "${cfg.package}/bin/koji-adjutant -c ${cfg.configFile} --fg --force-lock --verbose";
                ExecReload = "${pkgs.coreutils}/bin/kill -USR1 $MAINPID";
                Restart = "on-failure";
                RestartSec = "60s";
                KillMode = "mixed";
                TimeoutStopSec = "60s";
              };
            };
          };
        };
    };
}
