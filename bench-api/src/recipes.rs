//! Service recipes: TOML files describing what can be started.
//!
//! The recipes of `bench-api/recipes/` are compiled into the binary
//! ([`BUILTIN`]); a directory (`--recipes DIR`) adds to them and overrides
//! them by name. Each recipe says where it came from ([`Recipe::source`]).
//!
//! A recipe's command is an **argv template** (a list). A parameter is
//! substituted as a whole argument (`"{port}"`), never inside a string and never
//! through a shell; every parameter has a type and bounds. Unknown keys in a
//! recipe are an error naming the file and the key.
//!
//! ```toml
//! name = "demo-http"
//! description = "Python's built-in HTTP server"
//! category = "demo"
//! argv = ["python3", "-m", "http.server", "{port}", "--bind", "127.0.0.1"]
//! port = "{port}"
//! health_path = "/"
//!
//! [resources]
//! cpus = 1
//!
//! [parameters.port]
//! type = "integer"
//! default = 8000
//! min = 1024
//! max = 65535
//! ```

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::validate::ApiError;

/// Why the recipes could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum RecipeError {
    /// The directory or a file could not be read.
    #[error("cannot read recipes from {path}: {source}")]
    Io {
        /// The directory or file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// A file is not valid TOML for a recipe (unknown key, wrong type).
    #[error("recipe {path}: key `{key}`: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// The key path (`parameters.port.max`), or `.` for the file itself.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// A file parses but its content is inconsistent.
    #[error("recipe {path}: key `{key}`: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The key at fault.
        key: String,
        /// What is wrong.
        message: String,
    },
    /// Two files define the same recipe name.
    #[error("recipe name `{name}` is defined twice: {first} and {second}")]
    Duplicate {
        /// The name.
        name: String,
        /// The first file.
        first: PathBuf,
        /// The second file.
        second: PathBuf,
    },
}

/// The TCP port of a recipe's endpoint: a number, or `"{param}"` naming an
/// integer parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PortSpec {
    /// A fixed port.
    Fixed(u16),
    /// `"{name}"` of an integer parameter.
    Param(String),
}

/// Resources a service asks for (used by the Slurm backend).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resources {
    /// Nodes (`--nodes`).
    #[serde(default = "one")]
    pub nodes: u32,
    /// GPUs per node (`--gres=gpu:N`); a node exporter runs beside GPU services.
    #[serde(default)]
    pub gpus: u32,
    /// CPUs per task (`--cpus-per-task`).
    #[serde(default = "one")]
    pub cpus: u32,
    /// Memory per node in Slurm syntax (`16G`).
    #[serde(default)]
    pub memory: Option<String>,
    /// Time limit in Slurm syntax (`01:00:00`, `1-00:00:00`).
    #[serde(default)]
    pub time_limit: Option<String>,
}

fn one() -> u32 {
    1
}

impl Default for Resources {
    fn default() -> Self {
        Resources {
            nodes: 1,
            gpus: 0,
            cpus: 1,
            memory: None,
            time_limit: None,
        }
    }
}

/// A typed recipe parameter.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum Parameter {
    /// A whole number in `min..=max`.
    Integer {
        /// What it does.
        #[serde(default)]
        description: Option<String>,
        /// Used when the client omits it; required when absent.
        #[serde(default)]
        default: Option<i64>,
        /// Smallest accepted value.
        min: i64,
        /// Largest accepted value.
        max: i64,
    },
    /// Text of at most `max_length` characters, no control characters, not
    /// starting with `-` (so it cannot become an option of the program).
    String {
        /// What it does.
        #[serde(default)]
        description: Option<String>,
        /// Used when the client omits it; required when absent.
        #[serde(default)]
        default: Option<String>,
        /// Longest accepted value (default 256).
        #[serde(default)]
        max_length: Option<usize>,
    },
    /// One of `values`.
    Enum {
        /// What it does.
        #[serde(default)]
        description: Option<String>,
        /// The accepted values.
        values: Vec<String>,
        /// Used when the client omits it; required when absent.
        #[serde(default)]
        default: Option<String>,
    },
    /// `true` or `false` (substituted as those words).
    Bool {
        /// What it does.
        #[serde(default)]
        description: Option<String>,
        /// Used when the client omits it; required when absent.
        #[serde(default)]
        default: Option<bool>,
    },
}

const DEFAULT_MAX_STRING: usize = 256;

/// A service recipe (one TOML file).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Recipe {
    /// Unique name (`[a-z0-9._-]+`), used in `POST /api/v1/services`.
    pub name: String,
    /// One line for the Grafana dropdown.
    pub description: String,
    /// Grouping (`inference`, `demo`, …).
    pub category: String,
    /// The command as an argv template.
    pub argv: Vec<String>,
    /// The endpoint's port, when the service has one.
    #[serde(default)]
    pub port: Option<PortSpec>,
    /// Path answered with 2xx once the service is ready (`/health`); without
    /// one, a service is `running` as soon as its process runs.
    #[serde(default)]
    pub health_path: Option<String>,
    /// How long a service may stay `starting` before it is failed (default 600 s).
    #[serde(default = "default_startup_timeout")]
    pub startup_timeout_seconds: u64,
    /// Resources asked for.
    #[serde(default)]
    pub resources: Resources,
    /// Typed parameters, by name.
    #[serde(default)]
    pub parameters: BTreeMap<String, Parameter>,
    /// Where it came from: `builtin`, or the file's path (set by the
    /// [`Catalogue`]; not a key of the file).
    #[serde(skip_deserializing)]
    pub source: String,
}

include!(concat!(env!("OUT_DIR"), "/builtin_recipes.rs"));

/// [`Recipe::source`] of a recipe compiled into the binary.
pub const BUILTIN_SOURCE: &str = "builtin";

fn default_startup_timeout() -> u64 {
    600
}

/// A recipe with client parameters applied.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    /// Every parameter's value (defaults filled in), as JSON.
    pub params: serde_json::Map<String, serde_json::Value>,
    /// The command line.
    pub argv: Vec<String>,
    /// The endpoint's port.
    pub port: Option<u16>,
}

fn placeholder(arg: &str) -> Option<&str> {
    arg.strip_prefix('{')?.strip_suffix('}')
}

fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
}

impl Recipe {
    /// Parses and checks one recipe file's text; `path` is used in errors.
    ///
    /// # Errors
    /// [`RecipeError::Parse`] (bad TOML, unknown key, wrong type) or
    /// [`RecipeError::Invalid`] (inconsistent content), naming the key.
    pub fn parse(path: &Path, text: &str) -> Result<Recipe, RecipeError> {
        let de = toml::de::Deserializer::parse(text).map_err(|e| RecipeError::Parse {
            path: path.to_path_buf(),
            key: ".".into(),
            message: e.message().to_string(),
        })?;
        let recipe: Recipe = serde_path_to_error::deserialize(de).map_err(|e| {
            let key = e.path().to_string();
            let message = e.inner().message().to_string();
            RecipeError::Parse {
                path: path.to_path_buf(),
                key: unknown_key(&key, &message),
                message,
            }
        })?;
        recipe
            .check()
            .map_err(|(key, message)| RecipeError::Invalid {
                path: path.to_path_buf(),
                key,
                message,
            })?;
        Ok(recipe)
    }

    fn check(&self) -> Result<(), (String, String)> {
        let err = |k: &str, m: String| Err((k.to_string(), m));
        if !valid_name(&self.name) {
            return err(
                "name",
                format!("`{}` must match [a-z0-9._-]{{1,64}}", self.name),
            );
        }
        if self.argv.is_empty() || self.argv[0].is_empty() {
            return err("argv", "must name a program".into());
        }
        for (i, arg) in self.argv.iter().enumerate() {
            if let Some(name) = placeholder(arg) {
                if !self.parameters.contains_key(name) {
                    return err(&format!("argv[{i}]"), format!("`{arg}` names no parameter"));
                }
            } else if arg.contains(['{', '}']) {
                return err(
                    &format!("argv[{i}]"),
                    format!("`{arg}`: a parameter must be a whole argument (`{{name}}`)"),
                );
            }
        }
        for (name, p) in &self.parameters {
            let key = format!("parameters.{name}");
            if !valid_name(name) {
                return err(&key, "parameter names must match [a-z0-9._-]{1,64}".into());
            }
            match p {
                Parameter::Integer {
                    default, min, max, ..
                } => {
                    if min > max {
                        return err(&key, format!("min {min} > max {max}"));
                    }
                    if let Some(d) = default
                        && (d < min || d > max)
                    {
                        return err(&key, format!("default {d} outside {min}..={max}"));
                    }
                }
                Parameter::String {
                    default,
                    max_length,
                    ..
                } => {
                    if let Some(d) = default
                        && let Err(m) = check_string(d, max_length.unwrap_or(DEFAULT_MAX_STRING))
                    {
                        return err(&key, format!("default: {m}"));
                    }
                }
                Parameter::Enum {
                    values, default, ..
                } => {
                    if values.is_empty() {
                        return err(&key, "an enum needs values".into());
                    }
                    if let Some(v) = values
                        .iter()
                        .find(|v| check_string(v, DEFAULT_MAX_STRING).is_err())
                    {
                        return err(&key, format!("value `{v}` is not allowed"));
                    }
                    if let Some(d) = default
                        && !values.contains(d)
                    {
                        return err(&key, format!("default `{d}` is not one of the values"));
                    }
                }
                Parameter::Bool { .. } => {}
            }
        }
        if let Some(PortSpec::Param(p)) = &self.port {
            let Some(name) = placeholder(p) else {
                return err("port", format!("`{p}` must be a number or `{{param}}`"));
            };
            match self.parameters.get(name) {
                Some(Parameter::Integer { min, max, .. }) if *min >= 1 && *max <= 65535 => {}
                _ => {
                    return err(
                        "port",
                        format!("`{p}` must name an integer parameter bounded within 1..=65535"),
                    );
                }
            }
        }
        if let Some(h) = &self.health_path
            && (!h.starts_with('/') || h.chars().any(|c| c.is_control() || c == ' '))
        {
            return err(
                "health_path",
                "must start with `/` and hold no spaces".into(),
            );
        }
        if self.health_path.is_some() && self.port.is_none() {
            return err("health_path", "a health check needs a `port`".into());
        }
        if self.resources.nodes == 0 {
            return err("resources.nodes", "must be at least 1".into());
        }
        if let Some(m) = &self.resources.memory
            && !slurm_memory(m)
        {
            return err(
                "resources.memory",
                format!("`{m}` is not Slurm memory syntax (e.g. 16G)"),
            );
        }
        if let Some(t) = &self.resources.time_limit
            && (t.is_empty()
                || !t
                    .bytes()
                    .all(|b| b.is_ascii_digit() || b == b':' || b == b'-'))
        {
            return err(
                "resources.time_limit",
                format!("`{t}` is not Slurm time syntax"),
            );
        }
        Ok(())
    }

    /// Applies client parameters: unknown ones, wrong types, values out of
    /// bounds and missing required ones are `400` naming `params.NAME`.
    ///
    /// # Errors
    /// As above.
    pub fn resolve(
        &self,
        given: &BTreeMap<String, serde_json::Value>,
    ) -> Result<Resolved, ApiError> {
        if let Some(unknown) = given.keys().find(|k| !self.parameters.contains_key(*k)) {
            let known: Vec<&str> = self.parameters.keys().map(String::as_str).collect();
            return Err(ApiError::bad_field(
                format!("params.{unknown}"),
                format!(
                    "unknown parameter `{unknown}` for recipe `{}`, expected one of: {}",
                    self.name,
                    known.join(", ")
                ),
            ));
        }
        let mut params = serde_json::Map::new();
        let mut text: BTreeMap<&str, String> = BTreeMap::new();
        for (name, p) in &self.parameters {
            let field = format!("params.{name}");
            let value = given.get(name);
            let (json, rendered) = match p {
                Parameter::Integer {
                    default, min, max, ..
                } => {
                    let v = match value {
                        Some(v) => v.as_i64().ok_or_else(|| {
                            ApiError::bad_field(
                                &field,
                                format!("`{name}` must be an integer, got {v}"),
                            )
                        })?,
                        None => default.ok_or_else(|| required(&field, name))?,
                    };
                    crate::validate::in_range(&field, v, *min, *max)?;
                    (serde_json::Value::from(v), v.to_string())
                }
                Parameter::String {
                    default,
                    max_length,
                    ..
                } => {
                    let v = string_param(value, default.as_ref(), &field, name)?;
                    check_string(&v, max_length.unwrap_or(DEFAULT_MAX_STRING))
                        .map_err(|m| ApiError::bad_field(&field, format!("`{name}`: {m}")))?;
                    (serde_json::Value::from(v.clone()), v)
                }
                Parameter::Enum {
                    values, default, ..
                } => {
                    let v = string_param(value, default.as_ref(), &field, name)?;
                    if !values.contains(&v) {
                        return Err(ApiError::bad_field(
                            &field,
                            format!("`{name}` must be one of: {}", values.join(", ")),
                        ));
                    }
                    (serde_json::Value::from(v.clone()), v)
                }
                Parameter::Bool { default, .. } => {
                    let v = match value {
                        Some(serde_json::Value::Bool(b)) => *b,
                        Some(v) => {
                            return Err(ApiError::bad_field(
                                &field,
                                format!("`{name}` must be true or false, got {v}"),
                            ));
                        }
                        None => default.ok_or_else(|| required(&field, name))?,
                    };
                    (serde_json::Value::from(v), v.to_string())
                }
            };
            params.insert(name.clone(), json);
            text.insert(name.as_str(), rendered);
        }
        let argv = self
            .argv
            .iter()
            .map(|arg| match placeholder(arg) {
                Some(name) => text.get(name).cloned().unwrap_or_default(),
                None => arg.clone(),
            })
            .collect();
        let port = match &self.port {
            None => None,
            Some(PortSpec::Fixed(p)) => Some(*p),
            Some(PortSpec::Param(p)) => placeholder(p)
                .and_then(|n| text.get(n))
                .and_then(|v| v.parse::<u16>().ok()),
        };
        Ok(Resolved { params, argv, port })
    }
}

/// The value of a string (or enum) parameter `name`: the given JSON string,
/// else the default; `400` naming `field` for another JSON type or a missing
/// required one.
fn string_param(
    value: Option<&serde_json::Value>,
    default: Option<&String>,
    field: &str,
    name: &str,
) -> Result<String, ApiError> {
    match value {
        Some(serde_json::Value::String(s)) => Ok(s.clone()),
        Some(v) => Err(ApiError::bad_field(
            field,
            format!("`{name}` must be a string, got {v}"),
        )),
        None => default.cloned().ok_or_else(|| required(field, name)),
    }
}

fn required(field: &str, name: &str) -> ApiError {
    ApiError::bad_field(
        field,
        format!("parameter `{name}` is required (it has no default)"),
    )
}

/// JSON Schema `pattern` of what [`check_string`] accepts (with `maxLength`):
/// no control character (Unicode `Cc`), no leading `-`.
pub const STRING_PARAM_PATTERN: &str =
    "^([^\\-\\u0000-\\u001f\\u007f-\\u009f][^\\u0000-\\u001f\\u007f-\\u009f]*)?$";

impl Parameter {
    /// The JSON Schema of the values this parameter accepts (for OpenAPI).
    pub fn json_schema(&self) -> serde_json::Value {
        use serde_json::json;
        let (mut schema, description) = match self {
            Parameter::Integer {
                description,
                default,
                min,
                max,
            } => (
                json!({"type": "integer", "minimum": min, "maximum": max, "default": default}),
                description,
            ),
            Parameter::String {
                description,
                default,
                max_length,
            } => (
                json!({
                    "type": "string",
                    "maxLength": max_length.unwrap_or(DEFAULT_MAX_STRING),
                    "pattern": STRING_PARAM_PATTERN,
                    "default": default,
                }),
                description,
            ),
            Parameter::Enum {
                description,
                values,
                default,
            } => (
                json!({"type": "string", "enum": values, "default": default}),
                description,
            ),
            Parameter::Bool {
                description,
                default,
            } => (json!({"type": "boolean", "default": default}), description),
        };
        if let Some(obj) = schema.as_object_mut() {
            if obj.get("default").is_some_and(serde_json::Value::is_null) {
                obj.remove("default");
            }
            if let Some(d) = description {
                obj.insert("description".into(), json!(d));
            }
        }
        schema
    }

    /// Whether a client must give it (it has no default).
    pub fn is_required(&self) -> bool {
        match self {
            Parameter::Integer { default, .. } => default.is_none(),
            Parameter::String { default, .. } | Parameter::Enum { default, .. } => {
                default.is_none()
            }
            Parameter::Bool { default, .. } => default.is_none(),
        }
    }
}

fn check_string(s: &str, max_len: usize) -> Result<(), String> {
    if s.chars().count() > max_len {
        return Err(format!("longer than {max_len} characters"));
    }
    if s.chars().any(char::is_control) {
        return Err("control characters are not allowed".into());
    }
    if s.starts_with('-') {
        return Err("must not start with `-`".into());
    }
    Ok(())
}

fn slurm_memory(m: &str) -> bool {
    let digits = m.trim_end_matches(['K', 'M', 'G', 'T']);
    !digits.is_empty() && digits.len() + 1 >= m.len() && digits.bytes().all(|b| b.is_ascii_digit())
}

/// `serde` reports an unknown key at its parent's path; put the key itself in.
fn unknown_key(path: &str, message: &str) -> String {
    let name = message
        .strip_prefix("unknown field `")
        .or_else(|| message.strip_prefix("missing field `"))
        .and_then(|r| r.split('`').next());
    match name {
        Some(n) => crate::validate::join_path(path, n),
        None => path.to_string(),
    }
}

/// The recipes: the built-in ones, then a directory's (`*.toml`), by name.
#[derive(Debug, Clone, Default)]
pub struct Catalogue {
    recipes: BTreeMap<String, Recipe>,
}

impl Catalogue {
    /// The built-in recipes, then every `*.toml` file of `dir` (if any): a
    /// file's recipe replaces a built-in one of the same name.
    ///
    /// # Errors
    /// The first file that cannot be read or is invalid, or a name defined by
    /// two files of `dir`.
    pub fn load(dir: Option<&Path>) -> Result<Catalogue, RecipeError> {
        let mut recipes: BTreeMap<String, Recipe> = BTreeMap::new();
        for (file, text) in BUILTIN {
            let mut recipe = Recipe::parse(Path::new(file), text)?;
            recipe.source = BUILTIN_SOURCE.to_string();
            recipes.insert(recipe.name.clone(), recipe);
        }
        let Some(dir) = dir else {
            return Ok(Catalogue { recipes });
        };
        let io = |source| RecipeError::Io {
            path: dir.to_path_buf(),
            source,
        };
        let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(io)?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "toml"))
            .collect();
        files.sort();
        let mut origin: BTreeMap<String, PathBuf> = BTreeMap::new();
        for path in files {
            let text = std::fs::read_to_string(&path).map_err(|source| RecipeError::Io {
                path: path.clone(),
                source,
            })?;
            let mut recipe = Recipe::parse(&path, &text)?;
            if let Some(first) = origin.get(&recipe.name) {
                return Err(RecipeError::Duplicate {
                    name: recipe.name,
                    first: first.clone(),
                    second: path,
                });
            }
            if recipes.contains_key(&recipe.name) {
                log::info!(
                    "recipe `{}` from {} overrides the built-in one",
                    recipe.name,
                    path.display()
                );
            }
            recipe.source = path.display().to_string();
            origin.insert(recipe.name.clone(), path);
            recipes.insert(recipe.name.clone(), recipe);
        }
        Ok(Catalogue { recipes })
    }

    /// The recipe called `name`.
    pub fn get(&self, name: &str) -> Option<&Recipe> {
        self.recipes.get(name)
    }

    /// All recipes, by name.
    pub fn all(&self) -> impl Iterator<Item = &Recipe> {
        self.recipes.values()
    }

    /// How many recipes there are.
    pub fn len(&self) -> usize {
        self.recipes.len()
    }

    /// True when there are none.
    pub fn is_empty(&self) -> bool {
        self.recipes.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DEMO: &str = r#"
name = "demo"
description = "d"
category = "demo"
argv = ["python3", "-m", "http.server", "{port}", "--bind", "127.0.0.1", "{dir}"]
port = "{port}"
health_path = "/"
[parameters.port]
type = "integer"
default = 8000
min = 1024
max = 65535
[parameters.dir]
type = "string"
default = "/tmp"
"#;

    fn demo() -> Recipe {
        Recipe::parse(Path::new("demo.toml"), DEMO).unwrap()
    }

    #[test]
    fn resolves_whole_arguments() {
        let r = demo()
            .resolve(&BTreeMap::from([(
                "port".to_string(),
                serde_json::json!(9000),
            )]))
            .unwrap();
        assert_eq!(r.argv[3], "9000");
        assert_eq!(r.argv[6], "/tmp");
        assert_eq!(r.port, Some(9000));
        let hostile = "x; rm -rf / $(id) `id`";
        let r = demo()
            .resolve(&BTreeMap::from([(
                "dir".to_string(),
                serde_json::json!(hostile),
            )]))
            .unwrap();
        assert_eq!(r.argv[6], hostile, "one argument, verbatim");
    }

    #[test]
    fn bad_params_name_the_field() {
        let cases = [
            (serde_json::json!({"nope": 1}), "params.nope"),
            (serde_json::json!({"port": "80"}), "params.port"),
            (serde_json::json!({"port": 80}), "params.port"),
            (serde_json::json!({"port": 1.5}), "params.port"),
            (serde_json::json!({"dir": "--evil"}), "params.dir"),
            (serde_json::json!({"dir": 3}), "params.dir"),
        ];
        for (given, field) in cases {
            let given: BTreeMap<String, serde_json::Value> = serde_json::from_value(given).unwrap();
            let e = demo().resolve(&given).unwrap_err();
            assert_eq!(
                (e.status, e.field.as_deref()),
                (400, Some(field)),
                "{}",
                e.error
            );
        }
    }

    #[test]
    fn unknown_keys_name_file_and_key() {
        let text = DEMO.replace("health_path", "helth_path");
        let e = Recipe::parse(Path::new("x/demo.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("x/demo.toml") && e.contains("helth_path"), "{e}");
        let text = DEMO.replace("max = 65535", "max = 65535\nmaximum = 3");
        let e = Recipe::parse(Path::new("demo.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("maximum"), "{e}");
        let text = DEMO.replace("\"{port}\", \"--bind\"", "\"--port={port}\", \"--bind\"");
        let e = Recipe::parse(Path::new("demo.toml"), &text)
            .unwrap_err()
            .to_string();
        assert!(e.contains("argv[3]"), "{e}");
        let text = DEMO.replace("default = 8000", "default = 80");
        assert!(Recipe::parse(Path::new("demo.toml"), &text).is_err());
    }

    #[test]
    fn shipped_recipes_are_built_in() {
        let cat = Catalogue::load(None).unwrap();
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("recipes");
        let files = std::fs::read_dir(&dir).unwrap().count();
        assert_eq!(
            cat.len(),
            files,
            "every file of {} is built in",
            dir.display()
        );
        for name in ["vllm", "ollama", "demo-http", "sleep"] {
            let r = cat.get(name).unwrap_or_else(|| panic!("{name} shipped"));
            assert_eq!(r.source, BUILTIN_SOURCE);
            r.resolve(&BTreeMap::new()).unwrap();
        }
    }

    #[test]
    fn a_directory_adds_and_overrides_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let mine = DEMO.replace("name = \"demo\"", "name = \"mine\"");
        let over = "name = \"sleep\"\ndescription = \"overridden\"\ncategory = \"demo\"\nargv = [\"sleep\", \"1\"]\n";
        std::fs::write(dir.path().join("mine.toml"), mine).unwrap();
        std::fs::write(dir.path().join("sleep.toml"), over).unwrap();
        let cat = Catalogue::load(Some(dir.path())).unwrap();
        let s = cat.get("sleep").unwrap();
        assert_eq!(s.description, "overridden");
        assert_eq!(
            s.source,
            dir.path().join("sleep.toml").display().to_string()
        );
        assert_eq!(
            cat.get("mine").unwrap().source,
            dir.path().join("mine.toml").display().to_string()
        );
        assert_eq!(cat.get("vllm").unwrap().source, BUILTIN_SOURCE);
        // `source` is not a key a file may set.
        std::fs::write(
            dir.path().join("mine.toml"),
            format!("{DEMO}\nsource = \"builtin\"\n").replace("name = \"demo\"", "name = \"mine\""),
        )
        .unwrap();
        let e = Catalogue::load(Some(dir.path())).unwrap_err().to_string();
        assert!(e.contains("source"), "{e}");
    }
}
