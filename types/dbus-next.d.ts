// The project's one place for dbus-next typings.
//
// dbus-next 0.10.2 ships its own `types.d.ts` (package.json "types"), written as an
// ambient `declare module 'dbus-next'` block; TypeScript picks it up through normal
// module resolution. Re-declaring the module here as a second ambient block would merge
// with that one and produce duplicate class declarations (only hidden because
// skipLibCheck is on). So this file is a module augmentation (note the `export {}`),
// which may only *add* members: interfaces merge with the shipped classes and
// interfaces; new exported types and functions may be declared freely.
//
// Known gaps in the shipped typings, checked against lib/*.js of 0.10.2:
// - `MessageBus.name` (the unique connection name) exists at runtime but is not typed;
//   added below.
// - `interface.Interface` is typed as extending EventEmitter but at runtime it does
//   not (it keeps a private `$emitter`), so never call `.on()`/`.emit()` on one; use
//   `Interface.emitPropertiesChanged` and signal methods instead. An augmentation
//   cannot remove a base class, hence only this note.
// - Values of `v` and `a{sv}` arguments arrive as `Variant` instances, `as` as plain
//   string arrays, `x`/`t` as bigint.

export {};

declare module 'dbus-next' {
  interface MessageBus {
    /** Unique bus name such as ":1.42"; null until the Hello reply has arrived. */
    name: string | null;
  }
}
