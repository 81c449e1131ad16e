import { agent, tool } from "@21st-sdk/agent"
import { z } from "zod"
import { mkdir, writeFile } from "node:fs/promises"
import { dirname } from "node:path"

// A tool runs in the sandbox, as `user`, under Node: Claude sees it as
// `mcp__agent__save_note`.
const saveNote = tool({
  description: "Save a note to a file in the sandbox",
  inputSchema: z.object({
    path: z.string().describe("File path, relative to /home/user"),
    text: z.string(),
  }),
  execute: async ({ path, text }, context) => {
    const file = `/home/user/${path}`
    await mkdir(dirname(file), { recursive: true })
    await writeFile(file, text)
    const by = context.env?.NOTES_AUTHOR ?? "anonymous"
    return { content: [{ type: "text", text: `saved ${text.length} bytes to ${path} (by ${by})` }] }
  },
})

export default agent({
  model: "claude-sonnet-4-6",
  systemPrompt: "You keep notes for the user with the save_note tool.",
  maxTurns: 10,
  tools: { save_note: saveNote },
  // Hooks run in the sandbox too. Returning false from onToolCall blocks the call.
  onToolCall: async ({ toolName, input }) => {
    if (toolName === "Bash" && String(input.command ?? "").includes("rm -rf")) return false
  },
  // After the turn: what it cost, as the CLI reported it.
  onFinish: async ({ cost, usage, turns }) => {
    await writeFile("/home/user/.last-turn.json", JSON.stringify({ cost, usage, turns }))
  },
})
