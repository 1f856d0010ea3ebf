//! The OpenAPI 3.1 document of the HTTP API, built from the same route list the router is built
//! from (`routes::routes`): every route is one [`Operation`] next to its handler, so a route
//! cannot be served without being documented. Request and response schemas are derived from the
//! Rust types with `schemars` (JSON Schema draft 2020-12, the dialect of OpenAPI 3.1), so the
//! document follows their serde attributes (tags, renames, defaults, skipped fields).
//! `GET /api/openapi.json` serves it.

use axum::http::Method;
use schemars::generate::SchemaSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::Serialize;
use serde_json::{Map, Value, json};

/// Produces the schema of one type (a `$ref` into `components.schemas` for named types).
pub(crate) type SchemaFn = fn(&mut SchemaGenerator) -> Schema;

/// The schema of `T`, as a [`SchemaFn`].
pub(crate) fn schema<T: JsonSchema>(generator: &mut SchemaGenerator) -> Schema {
    generator.subschema_for::<T>()
}

/// The body of every error response.
#[derive(Debug, Clone, Serialize, JsonSchema)]
pub(crate) struct ErrorBody {
    /// What went wrong, for people.
    pub error: String,
    /// Stable and machine-readable: `not_found`, `conflict`, `invalid_state`, `invalid_input`,
    /// `unauthorized`, `internal`, `bad_request`, `payload_too_large`, `unsupported_media_type`,
    /// `no_route`, `method_not_allowed`.
    pub code: String,
}

/// How a route authenticates its caller.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Auth {
    /// `Authorization: Bearer <api token>` (the server's API token).
    ApiToken,
    /// `Authorization: Bearer <run token>` (an agent's, checked by the engine).
    RunToken,
    /// GitHub's HMAC signature of the body (`X-Hub-Signature-256`), checked by the engine.
    Signature,
    /// Open.
    None,
}

/// What a response carries.
#[derive(Clone, Copy)]
pub(crate) enum Content {
    /// `application/json` of this schema.
    Json(SchemaFn),
    /// `application/x-ndjson`: a stream of lines, each one JSON value of this schema.
    Ndjson(SchemaFn),
    /// `text/event-stream`: Server-Sent Events (`id:`, `event:`, `data:` JSON), open-ended.
    EventStream,
    /// `{"error", "code"}` ([`ErrorBody`]).
    Error,
    /// `application/octet-stream`: a file's bytes.
    Binary,
}

impl Content {
    pub(crate) const NDJSON: &'static str = "application/x-ndjson";
    pub(crate) const EVENT_STREAM: &'static str = "text/event-stream";
}

/// A query parameter.
#[derive(Clone, Copy)]
pub(crate) struct Param {
    pub name: &'static str,
    pub description: &'static str,
    pub schema: SchemaFn,
}

/// A response header.
#[derive(Clone, Copy)]
pub(crate) struct Header {
    pub name: &'static str,
    pub description: &'static str,
}

/// One response of an operation.
#[derive(Clone)]
pub(crate) struct Response {
    pub status: u16,
    pub description: &'static str,
    pub content: Content,
    pub headers: Vec<Header>,
}

/// One route (a method on a path) as the document shows it.
#[derive(Clone)]
pub(crate) struct Operation {
    pub method: Method,
    /// The path with `{name}` parameters, as axum and OpenAPI both write it.
    pub path: &'static str,
    pub operation_id: &'static str,
    pub summary: &'static str,
    pub auth: Auth,
    pub query: Vec<Param>,
    /// The JSON request body and whether it is required.
    pub body: Option<(SchemaFn, bool)>,
    pub responses: Vec<Response>,
}

impl Operation {
    pub(crate) fn new(
        method: Method,
        path: &'static str,
        operation_id: &'static str,
        summary: &'static str,
    ) -> Self {
        Operation {
            method,
            path,
            operation_id,
            summary,
            auth: Auth::ApiToken,
            query: vec![],
            body: None,
            responses: vec![],
        }
    }

    pub(crate) fn auth(mut self, auth: Auth) -> Self {
        self.auth = auth;
        self
    }

    pub(crate) fn query(
        mut self,
        name: &'static str,
        description: &'static str,
        schema: SchemaFn,
    ) -> Self {
        self.query.push(Param {
            name,
            description,
            schema,
        });
        self
    }

    /// A required JSON body of `schema`.
    pub(crate) fn body(mut self, schema: SchemaFn) -> Self {
        self.body = Some((schema, true));
        self
    }

    /// A JSON body that may be left out.
    pub(crate) fn optional_body(mut self, schema: SchemaFn) -> Self {
        self.body = Some((schema, false));
        self
    }

    /// The success response.
    pub(crate) fn ok(mut self, status: u16, description: &'static str, content: Content) -> Self {
        self.responses.push(Response {
            status,
            description,
            content,
            headers: vec![],
        });
        self
    }

    /// A response header of the success response added last.
    pub(crate) fn header(mut self, name: &'static str, description: &'static str) -> Self {
        if let Some(last) = self.responses.last_mut() {
            last.headers.push(Header { name, description });
        }
        self
    }

    /// Error responses with these statuses (each an [`ErrorBody`]). Every operation also gets
    /// 500; one that needs a token gets 401.
    pub(crate) fn errors(mut self, statuses: &[u16]) -> Self {
        for &status in statuses {
            self.responses.push(Response {
                status,
                description: error_description(status),
                content: Content::Error,
                headers: vec![],
            });
        }
        self
    }

    /// The operation's responses with the implied ones (401 for a token, 500) added, by status.
    pub(crate) fn all_responses(&self) -> Vec<Response> {
        let mut responses = self.responses.clone();
        let mut implied = vec![500];
        if matches!(self.auth, Auth::ApiToken | Auth::RunToken | Auth::Signature) {
            implied.push(401);
        }
        for status in implied {
            if !responses.iter().any(|r| r.status == status) {
                responses.push(Response {
                    status,
                    description: error_description(status),
                    content: Content::Error,
                    headers: vec![],
                });
            }
        }
        responses.sort_by_key(|r| r.status);
        responses
    }

    /// The names of the path's `{…}` parameters.
    pub(crate) fn path_params(&self) -> Vec<&'static str> {
        self.path
            .split('/')
            .filter_map(|s| s.strip_prefix('{')?.strip_suffix('}'))
            .collect()
    }
}

fn error_description(status: u16) -> &'static str {
    match status {
        400 => "The request is malformed: its path, query or body (see `error`).",
        401 => "No token, or the wrong one.",
        404 => "No such task or project.",
        409 => "The task or project is not in a state that allows this.",
        413 => "The body is larger than the server's limit (`--max-body-bytes`).",
        415 => "The body is not sent as `application/json`.",
        500 => "An internal error (details in the server log).",
        _ => "An error.",
    }
}

/// The OpenAPI 3.1 document of `operations`.
pub(crate) fn document(operations: &[Operation]) -> Value {
    let mut generator = SchemaSettings::draft2020_12()
        .with(|s| {
            s.definitions_path = "#/components/schemas/".into();
            s.meta_schema = None;
        })
        .into_generator();
    let error_ref = generator.subschema_for::<ErrorBody>().to_value();

    let mut paths = Map::new();
    for op in operations {
        let mut parameters = Vec::new();
        for name in op.path_params() {
            let (description, schema) = if name == "id" {
                (
                    "The task's id (a positive integer).",
                    json!({"type": "integer", "format": "int64", "minimum": 1}),
                )
            } else {
                ("The project's name or id.", json!({"type": "string"}))
            };
            parameters.push(json!({
                "name": name, "in": "path", "required": true,
                "description": description, "schema": schema,
            }));
        }
        for param in &op.query {
            parameters.push(json!({
                "name": param.name, "in": "query", "required": false,
                "description": param.description,
                "schema": (param.schema)(&mut generator).to_value(),
            }));
        }
        let mut responses = Map::new();
        for response in op.all_responses() {
            let (media, schema) = match response.content {
                Content::Json(schema) => ("application/json", schema(&mut generator).to_value()),
                Content::Ndjson(schema) => (Content::NDJSON, schema(&mut generator).to_value()),
                Content::EventStream => (Content::EVENT_STREAM, json!({"type": "string"})),
                Content::Binary => (
                    "application/octet-stream",
                    json!({"type": "string", "contentMediaType": "application/octet-stream"}),
                ),
                Content::Error => ("application/json", error_ref.clone()),
            };
            let mut entry = json!({
                "description": response.description,
                "content": { media: { "schema": schema } },
            });
            if !response.headers.is_empty() {
                let headers: Map<String, Value> = response
                    .headers
                    .iter()
                    .map(|h| {
                        (
                            h.name.to_string(),
                            json!({"description": h.description, "schema": {"type": "string"}}),
                        )
                    })
                    .collect();
                entry["headers"] = Value::Object(headers);
            }
            responses.insert(response.status.to_string(), entry);
        }
        let security = match op.auth {
            Auth::ApiToken => json!([{"apiToken": []}]),
            Auth::RunToken => json!([{"runToken": []}]),
            Auth::Signature => json!([{"githubSignature": []}]),
            Auth::None => json!([]),
        };
        let mut operation = json!({
            "operationId": op.operation_id,
            "summary": op.summary,
            "security": security,
            "responses": responses,
        });
        if !parameters.is_empty() {
            operation["parameters"] = Value::Array(parameters);
        }
        if let Some((schema, required)) = op.body {
            operation["requestBody"] = json!({
                "required": required,
                "content": {"application/json": {"schema": schema(&mut generator).to_value()}},
            });
        }
        let item = paths
            .entry(op.path.to_string())
            .or_insert_with(|| Value::Object(Map::new()));
        item[op.method.as_str().to_ascii_lowercase()] = operation;
    }

    json!({
        "openapi": "3.1.0",
        "jsonSchemaDialect": "https://json-schema.org/draft/2020-12/schema",
        "info": {
            "title": "Atelier",
            "version": env!("CARGO_PKG_VERSION"),
            "description": "The HTTP API of an Atelier server. Errors are `{\"error\", \"code\"}` \
                with a stable `code`. Lists are pages in ascending id order: `limit` (default \
                100, at most 500) and `after` (an exclusive id cursor); a `Link: <…>; \
                rel=\"next\"` header names the next page.",
        },
        "paths": paths,
        "components": {
            "schemas": generator.take_definitions(true),
            "securitySchemes": {
                "apiToken": {
                    "type": "http", "scheme": "bearer",
                    "description": "The server's API token (`<data-dir>/api-token`, ATELIER_TOKEN).",
                },
                "runToken": {
                    "type": "http", "scheme": "bearer",
                    "description": "The run token of an agent's run (ATELIER_RUN_TOKEN in its \
                        environment): valid for its own task only.",
                },
                "githubSignature": {
                    "type": "apiKey", "in": "header", "name": "X-Hub-Signature-256",
                    "description": "HMAC-SHA256 of the body with the project's webhook secret.",
                },
            },
        },
    })
}
