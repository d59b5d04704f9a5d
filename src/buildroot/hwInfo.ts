/**
 * `hw_info.log`, as mock's hw_info plugin writes it into kojid's result dir: the builder's CPUs,
 * memory and the free space where the buildroot lives — what an admin looks at first when a
 * build was slow or ran out of room.
 */
import * as fs from "node:fs"
import * as os from "node:os"

const human = (bytes: number): string => {
  const units = ["B", "K", "M", "G", "T", "P"]
  let v = bytes
  let i = 0
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024
    i++
  }
  return i === 0 ? `${v}${units[i]}` : `${v < 10 ? v.toFixed(1) : Math.round(v)}${units[i]}`
}

const row = (cells: ReadonlyArray<string>, widths: ReadonlyArray<number>): string =>
  cells.map((c, i) => (i === 0 ? c.padEnd(widths[i]!) : c.padStart(widths[i]!))).join(" ").trimEnd()

/** The text of hw_info.log for a buildroot whose files live under `dirs`. */
export const hwInfo = (dirs: ReadonlyArray<string>): string => {
  const cpus = os.cpus()
  const models = [...new Set(cpus.map((c) => c.model.trim()))]
  const lines: Array<string> = ["CPU info:"]
  lines.push(`Architecture:        ${os.machine()}`)
  lines.push(`CPU(s):              ${cpus.length}`)
  for (const m of models) lines.push(`Model name:          ${m}`)
  lines.push(`Load average:        ${os.loadavg().map((l) => l.toFixed(2)).join(" ")}`)
  lines.push(`Kernel:              ${os.type()} ${os.release()}`)
  lines.push("", "Memory:")
  const total = os.totalmem()
  const free = os.freemem()
  const mw = [6, 12, 12, 12]
  lines.push(row(["", "total", "used", "free"], mw))
  lines.push(row(["Mem:", String(Math.round(total / 1024)), String(Math.round((total - free) / 1024)), String(Math.round(free / 1024))], mw))
  lines.push("", "Storage:")
  const sw = [40, 6, 6, 6, 5]
  lines.push(row(["Directory", "Size", "Used", "Avail", "Use%"], sw))
  for (const dir of dirs) {
    try {
      const st = fs.statfsSync(dir)
      const size = st.blocks * st.bsize
      const avail = st.bavail * st.bsize
      const used = size - st.bfree * st.bsize
      const pct = size === 0 ? 0 : Math.ceil((used / (used + avail)) * 100)
      lines.push(row([dir, human(size), human(used), human(avail), `${pct}%`], sw))
    } catch (e) {
      lines.push(`${dir}: ${e instanceof Error ? e.message : String(e)}`)
    }
  }
  return `${lines.join("\n")}\n`
}
