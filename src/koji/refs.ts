/** How koji's calls name things: by id or by name. */
import { Schema } from "effect"

/** A tag, build, user or package given by id or name (koji accepts both). */
export type Ref = number | string

/** A tag given by id or name, as a task parameter. */
export const TagRef: Schema.Schema<Ref> = Schema.Union(Schema.Number, Schema.String)

/** A tag as newRepo accepts it: id, name, or the `{id, name}` struct kojira sends. */
export const TagRefOrInfo = Schema.Union(Schema.Int, Schema.String, Schema.Struct({ id: Schema.Int, name: Schema.String }))
