/**
 * python-multilib's devel method (as kojid's do_multilib uses it) over a table of packages,
 * the multilib.conf reader, fnmatch and the rpm header query parser.
 */
import { assert, describe, it } from "@effect/vitest"
import { Either } from "effect"
import { develSelect, type MultilibConfig, type MultilibPackage, parseHeaderQuery, parseMultilibConfig, runtimeSelect } from "../../src/tasks/multilib.js"
import { fnmatch } from "../../src/koji/fnmatch.js"

/** python-multilib's own conf/multilib.conf. */
const SAMPLE_CONF = `# Used with the Runtime multilib method. Package names in the white list will
# always get a 32-bit package included, and packages in the black list will
# never have one included.
[runtime]
white = libflashsupport
    libgnat
    lmms-vst
    nspluginwrapper
    perl-libs
    redhat-lsb
    syslinux-extlinux-nonlinux
    syslinux-nonlinux
    syslinux-tftpboot
    valgrind
    wine
    yaboot
black = httpd
    php
    tomcat-native

# Used with the Devel multilib method. The lists here are unioned with the
# lists in the runtime method.
[devel]
white = 
black = dmraid-devel
    httpd-devel
    kdeutils-devel
    mkinitrd-devel
    java-1.5.0-gcj-devel
    java-1.6.0-openjdk-devel
    java-1.7.0-icedtea-devel
    java-1.7.0-openjdk-devel
    java-1.8.0-openjdk-devel
    php-devel

[multilib]
packages = glibc
    steam
    whatever
`

const conf = (): MultilibConfig => Either.getOrThrow(parseMultilibConfig(SAMPLE_CONF))

const pkg = (name: string, files: ReadonlyArray<string> = [], arch = "x86_64", provides: ReadonlyArray<string> = [name]): MultilibPackage =>
  ({ name, arch, files, provides })

/** [package, devel selects it, why]. */
const TABLE: ReadonlyArray<readonly [MultilibPackage, boolean, string]> = [
  [pkg("libfoo", ["/usr/lib64/libfoo.so.1"]), true, "a versioned shared library in a lib dir"],
  [pkg("libfoo", ["/usr/lib/libfoo.so.1"], "i686"), true, "file rules do not look at the arch"],
  [pkg("footool", ["/usr/bin/footool"]), false, "a plain tool"],
  [pkg("libfoo-devel", ["/usr/include/foo.h", "/usr/lib64/libfoo.so"]), true, "-devel name"],
  [pkg("foo-static", ["/usr/lib64/libfoo.a"]), true, "-static name"],
  [pkg("ghc-foo-devel", ["/usr/lib64/ghc/foo.hi"]), false, "ghc- packages are never devel multilib"],
  [pkg("httpd-devel", ["/usr/include/httpd/h.h"]), false, "devel black list"],
  [pkg("httpd", ["/usr/lib64/libhttpd.so.1"]), false, "runtime black list beats the library rule"],
  [pkg("tomcat", ["/usr/lib64/libtomcat.so.1"]), false, "black list is a substring test of the raw option ('tomcat' in 'tomcat-native')"],
  [pkg("hp", ["/usr/lib64/libhp.so.1"]), false, "'hp' is a substring of 'php'"],
  [pkg("valgrind", ["/usr/bin/valgrind"]), true, "runtime white list"],
  [pkg("gdb", ["/usr/bin/gdb"]), true, "PREFER_64 on a 64-bit arch"],
  [pkg("gdb", ["/usr/bin/gdb"], "ppc"), false, "PREFER_64 only for arches with 64 in the name"],
  [pkg("kernel", ["/boot/vmlinuz"], "x86_64", ["kernel"]), true, "base method: a 64-bit kernel"],
  [pkg("kernel", ["/boot/vmlinuz"], "i686", ["kernel"]), false, "runtime: a kernel that is not 64-bit"],
  [pkg("kernel-headers", ["/usr/include/linux/x.h"], "i686", ["kernel-headers", "kernel-headers-devel"]), true, "kernel* providing -devel"],
  [pkg("kernel-devel", ["/usr/src/x"], "i686", ["kernel-devel"]), false, "kernel-devel provide on a 32-bit arch"],
  [pkg("pam-foo", ["/lib64/security/pam_foo.so"]), true, "pam modules (by_dir)"],
  [pkg("foo-conf", ["/etc/ld.so.conf.d/foo.conf"]), true, "ld.so.conf.d snippet"],
  [pkg("nss-foo", ["/lib64/libnss_foo.so"]), true, "nss modules in a root lib dir"],
  [pkg("nss-foo2", ["/usr/lib64/libnss_foo.so"]), false, "nss rule is for /lib and /lib64 only"],
  [pkg("gtk-engine", ["/usr/lib64/gtk-2.0/2.10.0/engines/libx.so"]), true, "gtk2 engines"],
  [pkg("gtk-other", ["/usr/lib64/gtk-2.0/2.10.0/other/x"]), false, "other gtk-2.0 dirs"],
  [pkg("gst-foo", ["/usr/lib64/gstreamer-1.0/libgstfoo.so"]), true, "gstreamer plugins"],
  [pkg("qt-style", ["/usr/lib64/qt5/plugins/styles/x.so"]), true, "qt plugins"],
  [pkg("pixbuf-foo", ["/usr/lib64/gdk-pixbuf-2.0/2.10.0/loaders/x.so"]), true, "gdk-pixbuf loaders"],
  [pkg("wine-foo", ["/usr/lib64/wine/x.so"]), true, "wine .so"],
  [pkg("sane-foo", ["/usr/lib64/sane/libsane-foo.so"]), true, "sane drivers"],
  [pkg("oprofile-foo", ["/usr/lib64/oprofile/libx.so.0"]), true, "oprofile libs"],
  [pkg("foo-data", ["/usr/share/foo/data"], "noarch"), false, "data only"],
  [pkg("foo-unversioned", ["/usr/lib64/libfoo.so"]), false, "an unversioned .so is not a runtime library"],
  [pkg("foo-sub", ["/usr/lib64/foo/libfoo.so.1"]), false, "libraries below a lib dir do not count"]
]

describe("multilib devel method", () => {
  for (const [po, expected, why] of TABLE) {
    it(`${po.name}.${po.arch} ${po.files.join(" ")} → ${expected}: ${why}`, () => {
      assert.strictEqual(develSelect(conf(), po), expected)
    })
  }

  it("devel adds -devel/-static to runtime; runtime alone does not take them", () => {
    assert.isFalse(runtimeSelect(conf(), pkg("libfoo-devel", ["/usr/include/foo.h"])))
    assert.isTrue(develSelect(conf(), pkg("libfoo-devel", ["/usr/include/foo.h"])))
  })

  it("the devel white list selects anything it names (substring)", () => {
    const c = { ...conf(), develWhite: "footool-extra" }
    assert.isTrue(develSelect(c, pkg("footool", ["/usr/bin/footool"])))
  })
})

describe("multilib.conf", () => {
  it("reads the raw multi-line white/black values as configparser does", () => {
    const c = conf()
    assert.strictEqual(c.runtimeBlack, "httpd\nphp\ntomcat-native")
    assert.strictEqual(c.develWhite, "")
    assert.isTrue(c.develBlack.startsWith("dmraid-devel\nhttpd-devel\n"))
    assert.isTrue(c.runtimeWhite.endsWith("\nwine\nyaboot"))
  })

  it("option names are case-insensitive, ':' delimits, DEFAULT values are inherited, %% is a percent", () => {
    const c = Either.getOrThrow(parseMultilibConfig("[DEFAULT]\nwhite = x\n; comment\n[runtime]\nBLACK: a%%b\n[devel]\nblack = %(white)s-devel\n"))
    assert.deepStrictEqual(c, { runtimeWhite: "x", runtimeBlack: "a%b", develWhite: "x", develBlack: "x-devel" })
  })

  it("fails naming what configparser would: a missing section, a missing option, a bad line", () => {
    const reason = (text: string) => Either.match(parseMultilibConfig(text), { onLeft: (e) => e.reason, onRight: () => "parsed" })
    assert.strictEqual(reason("[runtime]\nwhite=\nblack=\n"), "No section: 'devel'")
    assert.strictEqual(reason("[runtime]\nwhite=\n[devel]\nwhite=\nblack=\n"), "No option 'black' in section: 'runtime'")
    assert.include(reason("white = x\n"), "no section headers")
    assert.include(reason("[runtime]\njust words\n"), "parsing errors")
    assert.include(reason("[runtime]\nwhite=a\nwhite=b\n"), "already exists")
    assert.include(reason("[runtime]\nwhite=5%\nblack=\n[devel]\nwhite=\nblack=\n"), "'%' must be followed")
  })
})

describe("fnmatch and the header query", () => {
  it("fnmatch: * and ? cross slashes, anchored, [seq]", () => {
    assert.isTrue(fnmatch("libfoo.so.1", "*.so.*"))
    assert.isFalse(fnmatch("libfoo.so", "*.so.*"))
    assert.isTrue(fnmatch("/usr/lib64/qt5/plugins/a/b", "/usr/lib*/qt*/plugins/*"))
    assert.isTrue(fnmatch("abc", "a?c"))
    assert.isTrue(fnmatch("a1", "a[0-9]"))
    assert.isFalse(fnmatch("a1", "a[!0-9]"))
    assert.isFalse(fnmatch("xa.so.1", "a*.so.*"))
  })

  it("parses one package per @ line; directories and %ghost files are not file entries", () => {
    const text = [
      "@\tlibfoo\tx86_64",
      "F\tdrwxr-xr-x\t\t/usr/lib64/foo",
      "F\t-rw-r--r--\tg\t/usr/lib64/libghost.so.1",
      "F\t-rw-r--r--\t\t/usr/lib64/libfoo.so.1",
      "F\tlrwxrwxrwx\t\t/usr/lib64/libfoo.so",
      "P\tlibfoo",
      "P\tlibfoo(x86-64)",
      "@\tempty\tnoarch",
      ""
    ].join("\n")
    assert.deepStrictEqual(parseHeaderQuery(text), [
      { name: "libfoo", arch: "x86_64", files: ["/usr/lib64/libfoo.so.1", "/usr/lib64/libfoo.so"], provides: ["libfoo", "libfoo(x86-64)"] },
      { name: "empty", arch: "noarch", files: [], provides: [] }
    ])
  })
})
