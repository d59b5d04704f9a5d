{
  description = "koji-adjutant: a kojid replacement that runs koji tasks in ephemeral podman containers";

  # Node.js 24 LTS (nodejs_24) is in nixpkgs from 25.05 on; 24.11 had only up to 23.
  inputs.nixpkgs.url = "github:NixOS/nixpkgs/nixos-26.05";

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
          nodejs = pkgs.nodejs_24;
          npmDeps = pkgs.importNpmLock { npmRoot = ./.; };
          npmConfigHook = pkgs.importNpmLock.npmConfigHook;
          npmBuildScript = "build";
          # Tests need podman and root; they run in CI (.ci/run), not in the sandbox.
          doCheck = false;
          postInstall = ''
            mkdir -p $out/bin
            makeWrapper ${pkgs.nodejs_24}/bin/node $out/bin/koji-adjutant \
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
          packages = [ pkgs.nodejs_24 pkgs.podman pkgs.runc pkgs.conmon pkgs.debootstrap pkgs.git pkgs.openssl
                       pkgs.krb5 pkgs.python3 pkgs.pkg-config ];
        };
      });

      # kojid.conf from services.koji-adjutant.settings: a section per attribute set, keys sorted;
      # booleans as True/False, lists (allowed_scms, plugin, image_rules, ...) one item per
      # indented continuation line, as configparser and `koji-adjutant check-config` read them.
      # Builtins only, so `nix-instantiate --eval` can render it without nixpkgs (the tests do).
      lib.kojidConf = sections:
        let
          indent = builtins.replaceStrings [ "\n" ] [ "\n    " ];
          line = key: value:
            if builtins.isList value then key + " =" + builtins.concatStringsSep "" (map (v: "\n    " + indent (toString v)) value)
            else if builtins.isBool value then key + " = " + (if value then "True" else "False")
            else key + " = " + indent (toString value);
          section = name: attrs:
            "[" + name + "]\n"
            + builtins.concatStringsSep "" (map (k: line k attrs.${k} + "\n")
                (builtins.filter (k: attrs.${k} != null) (builtins.attrNames attrs)));
        in builtins.concatStringsSep "\n" (map (name: section name sections.${name}) (builtins.attrNames sections));

      # NixOS: services.koji-adjutant.enable = true, with kojid.conf's keys under
      # services.koji-adjutant.settings.kojid and .adjutant (or a configFile of your own).
      nixosModules.default = { config, lib, pkgs, ... }:
        let
          cfg = config.services.koji-adjutant;
          atom = lib.types.nullOr (lib.types.oneOf [ lib.types.bool lib.types.int lib.types.float lib.types.str
                                                     (lib.types.listOf lib.types.str) ]);
          section = options: lib.types.submodule { freeformType = lib.types.attrsOf atom; inherit options; };
          generated = pkgs.writeText "kojid.conf" (self.lib.kojidConf { inherit (cfg.settings) kojid adjutant; });
          configPath = if cfg.configFile != null then cfg.configFile else "/etc/kojid/kojid.conf";
          logFile = cfg.settings.adjutant.log_file;
        in {
          options.services.koji-adjutant = {
            enable = lib.mkEnableOption "koji-adjutant, the koji build host daemon that runs tasks in podman containers";
            package = lib.mkOption {
              type = lib.types.package;
              default = self.packages.${pkgs.stdenv.hostPlatform.system}.default;
              description = "koji-adjutant package to run.";
            };
            settings = lib.mkOption {
              default = { };
              description = ''
                kojid.conf, written to /etc/kojid/kojid.conf: `kojid` holds kojid's keys, `adjutant`
                what kojid never had (see the package's examples/kojid.conf for every key). Values
                are strings, numbers, booleans or lists (one item per line); null leaves a key out.
                The file is world-readable in the Nix store: give secrets as files (`cert`,
                `keytab`) or use `configFile`.
              '';
              example = lib.literalExpression ''
                {
                  kojid = { server = "https://koji.example.com/kojihub"; topurl = "https://koji.example.com/kojifiles";
                            maxjobs = 4; log_level = "INFO"; plugin = [ "runroot" ]; };
                  adjutant = { status_listen = "127.0.0.1:8775"; image_rules = [ "f4*/* = registry.fedoraproject.org/fedora:41" ]; };
                }
              '';
              type = lib.types.submodule {
                options.kojid = lib.mkOption {
                  default = { };
                  description = "The [kojid] section.";
                  type = section {
                    server = lib.mkOption { type = lib.types.str; description = "The hub's XML-RPC URL."; };
                    topurl = lib.mkOption { type = lib.types.str; description = "The URL of the koji files."; };
                  };
                };
                options.adjutant = lib.mkOption {
                  default = { };
                  description = "The [adjutant] section.";
                  type = section {
                    log_file = lib.mkOption {
                      type = lib.types.str;
                      default = "/var/log/koji-adjutant/kojid.log";
                      description = "The log file (also in the journal). The default is in the service's LogsDirectory.";
                    };
                    oci_runtime = lib.mkOption {
                      type = lib.types.enum [ "runc" "crun" ];
                      default = "crun";
                      description = "OCI runtime podman runs containers with; crun is NixOS podman's.";
                    };
                  };
                };
              };
            };
            configFile = lib.mkOption {
              type = lib.types.nullOr lib.types.path;
              default = null;
              example = "/run/secrets/kojid.conf";
              description = "A kojid.conf of your own, used instead of `settings` (which then writes nothing).";
            };
            extraArgs = lib.mkOption {
              type = lib.types.listOf lib.types.str;
              default = [ ];
              example = [ "--debug" ];
              description = "Options added to `--fg --force-lock`; the log level belongs in `settings.kojid.log_level`.";
            };
          };
          config = lib.mkIf cfg.enable {
            virtualisation.podman.enable = true;
            environment.systemPackages = [ cfg.package ];
            environment.etc."kojid/kojid.conf" = lib.mkIf (cfg.configFile == null) { source = generated; };
            # kojid's workdir: kept out of /var/tmp's ageing, the daemon cleans up after each task.
            systemd.tmpfiles.rules = [ "d /var/tmp/koji 0755 root root -" "x /var/tmp/koji" ];
            services.logrotate.settings.koji-adjutant = lib.mkIf (cfg.configFile == null && logFile != "") {
              files = logFile;
              frequency = "weekly";
              rotate = 8;
              compress = true;
              delaycompress = true;
              missingok = true;
              notifempty = true;
              # The daemon reopens its log on SIGHUP: no copytruncate.
              postrotate = "${config.systemd.package}/bin/systemctl kill --signal=HUP --kill-who=main koji-adjutant.service";
            };
            systemd.services.koji-adjutant = {
              description = "koji build host daemon, tasks in podman containers (koji-adjutant)";
              documentation = [ "man:koji-adjutant(8)" ];
              wantedBy = [ "multi-user.target" ];
              conflicts = [ "kojid.service" ];
              after = [ "network-online.target" "podman.socket" ];
              wants = [ "network-online.target" "podman.socket" ];
              restartTriggers = lib.optional (cfg.configFile == null) generated;
              serviceConfig = {
                Type = "notify";
                ExecStart = "${cfg.package}/bin/koji-adjutant -c ${configPath} --fg --force-lock"
                  + lib.optionalString (cfg.extraArgs != [ ]) (" " + lib.escapeShellArgs cfg.extraArgs);
                ExecReload = "${pkgs.coreutils}/bin/kill -USR1 $MAINPID";
                WatchdogSec = "5min";
                TimeoutStartSec = "10min";
                KillMode = "mixed";
                TimeoutStopSec = "2min";
                Restart = "on-failure";
                RestartSec = "60s";
                StateDirectory = "koji-adjutant koji-adjutant/buildroots";
                StateDirectoryMode = "0755";
                LogsDirectory = "koji-adjutant";
              };
            };
          };
        };
    };
}
