/**
 * The shape of src/ that issue 11 asks to stay true: no function longer than about a screen, no
 * import cycles, imports only down the layers, and the two central files short enough to read.
 * Everything is measured with the TypeScript compiler's own parser.
 */
import { assert, describe, it } from "@effect/vitest"
import * as fs from "node:fs"
import * as path from "node:path"
import ts from "typescript-5"

const ROOT = path.resolve(import.meta.dirname, "..")
const SRC = path.join(ROOT, "src")
const MAX_FUNCTION_LINES = 120
const MAX_CENTRAL_FILE_LINES = 420

/** Each top-level directory of src/ (and main.ts) by layer: a file may import only from lower ranks or its own directory. */
const RANKS: Readonly<Record<string, number>> = {
  koji: 0, "version.ts": 0,
  metrics: 1,
  config: 1,
  hub: 2, containers: 2, mail: 2,
  runroot: 3, scm: 3,
  buildroot: 4,
  tasks: 5,
  local: 6, daemon: 6,
  admin: 7, cli: 7,
  "main.ts": 8
}

const listTs = (dir: string): Array<string> =>
  fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name)
    if (e.isDirectory()) return listTs(p)
    return e.isFile() && e.name.endsWith(".ts") && !e.name.endsWith(".d.ts") ? [p] : []
  })

const rel = (file: string) => path.relative(ROOT, file).split(path.sep).join("/")

const files = listTs(SRC).sort()
const sources = new Map(files.map((f) => [f, ts.createSourceFile(f, fs.readFileSync(f, "utf8"), ts.ScriptTarget.Latest, true)]))

const lineOf = (sf: ts.SourceFile, pos: number) => sf.getLineAndCharacterOfPosition(pos).line + 1

const nameOf = (node: ts.Node): string => {
  if ((ts.isFunctionDeclaration(node) || ts.isMethodDeclaration(node) || ts.isFunctionExpression(node)) && node.name !== undefined) {
    return node.name.getText()
  }
  let parent = node.parent
  while (ts.isCallExpression(parent) || ts.isParenthesizedExpression(parent) || ts.isArrowFunction(parent)) parent = parent.parent
  if (ts.isVariableDeclaration(parent) || ts.isPropertyAssignment(parent) || ts.isPropertyDeclaration(parent)) return parent.name.getText()
  return ts.SyntaxKind[node.kind]
}

/** Every function-like node longer than the limit, as `file:line name (n lines)`. */
const longFunctions = (sf: ts.SourceFile): Array<string> => {
  const found: Array<string> = []
  const visit = (node: ts.Node) => {
    if (ts.isArrowFunction(node) || ts.isFunctionExpression(node) || ts.isFunctionDeclaration(node) || ts.isMethodDeclaration(node) ||
      ts.isConstructorDeclaration(node) || ts.isGetAccessorDeclaration(node) || ts.isSetAccessorDeclaration(node)) {
      const start = lineOf(sf, node.getStart(sf))
      const lines = lineOf(sf, node.getEnd()) - start + 1
      if (lines > MAX_FUNCTION_LINES) found.push(`${rel(sf.fileName)}:${start} ${nameOf(node)} (${lines} lines)`)
    }
    ts.forEachChild(node, visit)
  }
  visit(sf)
  return found
}

/** The module specifiers a file imports: static imports and re-exports (type-only too), `import("…")` calls and types. */
const specifiersOf = (sf: ts.SourceFile): Array<string> => {
  const found: Array<string> = []
  const visit = (node: ts.Node) => {
    if ((ts.isImportDeclaration(node) || ts.isExportDeclaration(node)) && node.moduleSpecifier !== undefined &&
      ts.isStringLiteral(node.moduleSpecifier)) {
      found.push(node.moduleSpecifier.text)
    } else if (ts.isImportEqualsDeclaration(node) && ts.isExternalModuleReference(node.moduleReference) &&
      ts.isStringLiteral(node.moduleReference.expression)) {
      found.push(node.moduleReference.expression.text)
    } else if (ts.isCallExpression(node) && node.expression.kind === ts.SyntaxKind.ImportKeyword) {
      const arg = node.arguments[0]
      if (arg !== undefined && ts.isStringLiteralLike(arg)) found.push(arg.text)
    } else if (ts.isImportTypeNode(node) && ts.isLiteralTypeNode(node.argument) && ts.isStringLiteral(node.argument.literal)) {
      found.push(node.argument.literal.text)
    }
    ts.forEachChild(node, visit)
  }
  visit(sf)
  return found
}

/** The src file a relative specifier names (`./x.js` is `./x.ts`), or undefined for packages and node builtins. */
const resolve = (from: string, spec: string): string | undefined => {
  if (!spec.startsWith(".")) return undefined
  const target = path.resolve(path.dirname(from), spec)
  const candidates = [target.replace(/\.js$/, ".ts"), `${target}.ts`, path.join(target, "index.ts")]
  return candidates.find((c) => sources.has(c))
}

const imports = new Map(files.map((f) => {
  const sf = sources.get(f)
  return [f, sf === undefined ? [] : [...new Set(specifiersOf(sf).flatMap((s) => resolve(f, s) ?? []))]]
}))

/** The layer key of a src file: its top-level directory, or its name for a file directly in src/. */
const layerOf = (file: string) => path.relative(SRC, file).split(path.sep)[0] ?? ""

/** The cycles of the import graph (one per strongly connected component of more than one file, or a file importing itself). */
const importCycles = (imports: ReadonlyMap<string, ReadonlyArray<string>>): Array<Array<string>> => {
  let next = 0
  const index = new Map<string, number>()
  const low = new Map<string, number>()
  const stack: Array<string> = []
  const onStack = new Set<string>()
  const components: Array<Array<string>> = []
  const connect = (v: string) => {
    index.set(v, next)
    low.set(v, next)
    next++
    stack.push(v)
    onStack.add(v)
    for (const w of imports.get(v) ?? []) {
      if (!index.has(w)) {
        connect(w)
        low.set(v, Math.min(low.get(v) ?? 0, low.get(w) ?? 0))
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v) ?? 0, index.get(w) ?? 0))
      }
    }
    if (low.get(v) === index.get(v)) {
      const component: Array<string> = []
      let w: string | undefined
      do {
        w = stack.pop()
        if (w === undefined) break
        onStack.delete(w)
        component.push(w)
      } while (w !== v)
      if (component.length > 1 || (imports.get(v) ?? []).includes(v)) components.push(component.sort())
    }
  }
  for (const f of imports.keys()) if (!index.has(f)) connect(f)
  return components
}

describe("architecture of src/", () => {
  it("finds the source files", () => {
    assert.isAbove(files.length, 50)
    assert.isTrue(files.some((f) => rel(f) === "src/main.ts"))
  })

  it("measures what it claims to (the checks themselves)", () => {
    const body = Array.from({ length: MAX_FUNCTION_LINES - 2 }, (_, i) => `  const x${i} = ${i}`).join("\n")
    const sf = ts.createSourceFile("src/x.ts", `const short = () => {\n${body}\n}\nconst long = Effect.fn("x")(function* () {\n${body}\n  yield* y\n})\n`,
      ts.ScriptTarget.Latest, true)
    assert.deepStrictEqual(longFunctions(sf).map((l) => l.replace(/^.*:/, "")), [`${MAX_FUNCTION_LINES + 1} long (${MAX_FUNCTION_LINES + 1} lines)`])
    assert.deepStrictEqual(importCycles(new Map([["a", ["b"]], ["b", ["c"]], ["c", ["a"]], ["d", ["a"]], ["e", ["e"]]])), [["a", "b", "c"], ["e"]])
  })

  it(`has no function longer than ${MAX_FUNCTION_LINES} lines`, () => {
    const long = files.flatMap((f) => {
      const sf = sources.get(f)
      return sf === undefined ? [] : longFunctions(sf)
    })
    assert.deepStrictEqual(long, [])
  })

  it("has no import cycles", () => {
    assert.deepStrictEqual(importCycles(imports).map((c) => c.map(rel)), [])
  })

  it("places every file in a layer", () => {
    const unplaced = files.map(rel).filter((f) => RANKS[layerOf(path.join(ROOT, f))] === undefined)
    assert.deepStrictEqual(unplaced, [])
  })

  it("imports only down the layers", () => {
    const upward = files.flatMap((f) => {
      const from = layerOf(f)
      const rank = RANKS[from]
      return (imports.get(f) ?? []).flatMap((t) => {
        const to = layerOf(t)
        const target = RANKS[to]
        if (to === from || rank === undefined || target === undefined || target < rank) return []
        return [`${rel(f)} (${from}, ${rank}) imports ${rel(t)} (${to}, ${target})`]
      })
    })
    assert.deepStrictEqual(upward, [])
  })

  it(`keeps TaskManager.ts and Buildroots.ts at most ${MAX_CENTRAL_FILE_LINES} lines`, () => {
    const long = ["src/daemon/TaskManager.ts", "src/buildroot/Buildroots.ts"].flatMap((f) => {
      const text = fs.readFileSync(path.join(ROOT, f), "utf8")
      const lines = text.split("\n").length - (text.endsWith("\n") ? 1 : 0)
      return lines > MAX_CENTRAL_FILE_LINES ? [`${f}: ${lines} lines`] : []
    })
    assert.deepStrictEqual(long, [])
  })
})
