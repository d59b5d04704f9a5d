/** The admin commands (issue 14 §6): each reads the daemon's kojid.conf and is safe beside a running daemon, or refuses. */
import { cacheCommand } from "./cache.js"
import { containersCommand } from "./containers.js"
import { imagesCommand } from "./images.js"
import { statusCommand } from "./status.js"

/** `status`, `cache`, `containers`, `images`. */
export const adminCommands = [statusCommand, cacheCommand, containersCommand, imagesCommand] as const
