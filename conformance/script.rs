//! Parsing of scansion-style `.scs` scripts (see `conformance/README.md`).

/// A parsed script.
#[derive(Debug, Default)]
pub struct Script {
    /// The first `# ` comment line.
    pub title: String,
    /// `## tag: value` lines, in order.
    pub tags: Vec<(String, String)>,
    /// The `[Client]` blocks.
    pub clients: Vec<ClientSpec>,
    /// The actions, in order.
    pub steps: Vec<Step>,
}

/// One `[Client] Name` block.
#[derive(Debug, Default)]
pub struct ClientSpec {
    pub name: String,
    pub jid: String,
    pub password: String,
    pub resource: Option<String>,
}

/// One action line with its XML block.
#[derive(Debug)]
pub struct Step {
    /// 1-based line of the action.
    pub line: usize,
    /// Index into [`Script::clients`].
    pub client: usize,
    pub action: Action,
}

#[derive(Debug)]
pub enum Action {
    Connects,
    Disconnects,
    Sends(String),
    Receives(String),
    ReceivesNothing,
}

impl Script {
    /// Parses a script; errors start with the line number.
    pub fn parse(text: &str) -> Result<Script, String> {
        let lines: Vec<&str> = text.lines().collect();
        let mut script = Script::default();
        let mut i = 0;
        while i < lines.len() {
            let line = lines[i];
            let number = i + 1;
            let trimmed = line.trim();
            i += 1;
            if trimmed.is_empty() || trimmed.chars().all(|c| c == '-') {
                continue;
            }
            if let Some(tag) = trimmed.strip_prefix("##") {
                let (key, value) = tag.split_once(':').ok_or(format!("{number}: a tag needs `## name: value`"))?;
                script.tags.push((key.trim().to_lowercase(), value.trim().to_owned()));
                continue;
            }
            if let Some(comment) = trimmed.strip_prefix('#') {
                if script.title.is_empty() && script.clients.is_empty() {
                    script.title = comment.trim().to_owned();
                }
                continue;
            }
            if let Some(name) = trimmed.strip_prefix("[Client]") {
                let mut spec = ClientSpec { name: name.trim().to_owned(), ..ClientSpec::default() };
                while i < lines.len() && is_indented(lines[i]) {
                    let (key, value) =
                        lines[i].trim().split_once(':').ok_or(format!("{}: expected `key: value`", i + 1))?;
                    let value = value.trim().to_owned();
                    match key.trim() {
                        "jid" => spec.jid = value,
                        "password" => spec.password = value,
                        "resource" => spec.resource = Some(value),
                        other => return Err(format!("{}: unknown client field `{other}`", i + 1)),
                    }
                    i += 1;
                }
                if spec.jid.is_empty() {
                    return Err(format!("{number}: client {} has no jid", spec.name));
                }
                script.clients.push(spec);
                continue;
            }
            if is_indented(line) {
                return Err(format!("{number}: indented line outside a block"));
            }
            let (who, action) = script.split_action(trimmed).ok_or(format!("{number}: unknown line `{trimmed}`"))?;
            let action = match action {
                "connects" => Action::Connects,
                "disconnects" => Action::Disconnects,
                "receives: nothing" => Action::ReceivesNothing,
                "sends:" | "receives:" => {
                    let mut block = String::new();
                    while i < lines.len() && (is_indented(lines[i]) || lines[i].trim().is_empty()) {
                        block.push_str(lines[i].trim());
                        block.push('\n');
                        i += 1;
                    }
                    let block = block.trim().to_owned();
                    if block.is_empty() {
                        return Err(format!("{number}: `{action}` needs an indented XML block"));
                    }
                    if action == "sends:" { Action::Sends(block) } else { Action::Receives(block) }
                }
                other => return Err(format!("{number}: unknown action `{other}`")),
            };
            script.steps.push(Step { line: number, client: who, action });
        }
        Ok(script)
    }

    /// Index of the client called `name`.
    pub fn client_index(&self, name: &str) -> Option<usize> {
        self.clients.iter().position(|c| c.name == name)
    }

    /// Splits `Name rest` where Name is a declared client (names may contain spaces).
    fn split_action<'a>(&self, line: &'a str) -> Option<(usize, &'a str)> {
        self.clients
            .iter()
            .enumerate()
            .filter_map(|(index, c)| {
                let rest = line.strip_prefix(c.name.as_str())?.strip_prefix(' ')?;
                Some((c.name.len(), index, rest.trim()))
            })
            .max_by_key(|(len, _, _)| *len)
            .map(|(_, index, rest)| (index, rest))
    }
}

fn is_indented(line: &str) -> bool {
    line.starts_with([' ', '\t']) && !line.trim().is_empty()
}
