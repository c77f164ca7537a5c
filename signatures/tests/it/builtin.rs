//! The shipped catalog: it compiles, covers what the issue promises, and its matchers classify
//! the examples that the rest of aiscout relies on.

use aiscout_signatures::{AppRef, Catalog, Category, ExtensionRef, Index};

fn index() -> Index {
    Index::new(Catalog::builtin().unwrap_or_else(|e| panic!("{e}")))
}

fn domain(ix: &Index, name: &str) -> Option<String> {
    ix.domain(name).map(|m| m.product.id.clone())
}

#[test]
fn builtin_catalog_covers_every_category_with_sixty_products() {
    let c = Catalog::builtin().unwrap_or_else(|e| panic!("{e}"));
    assert!(c.products().len() >= 60, "{} products", c.products().len());
    for cat in Category::ALL {
        assert!(c.products().iter().any(|p| p.category == cat), "no product in {cat}");
    }
    for p in c.products() {
        assert!(!p.sources.is_empty(), "{} has no source", p.id);
    }
}

#[test]
fn major_vendors_are_present() {
    let c = Catalog::builtin().unwrap_or_else(|e| panic!("{e}"));
    for id in [
        "openai.chatgpt",
        "openai.api",
        "anthropic.claude",
        "anthropic.api",
        "anysphere.cursor",
        "github.copilot",
        "google.gemini",
        "ollama.ollama",
    ] {
        assert!(c.product(id).is_some(), "missing {id}");
    }
    let vendors: Vec<&str> = c.products().iter().map(|p| p.vendor.as_str()).collect();
    for v in ["OpenAI", "Anthropic", "Google", "Microsoft", "GitHub", "Perplexity", "Mistral AI"] {
        assert!(vendors.iter().any(|x| x.starts_with(v)), "missing vendor {v}");
    }
}

#[test]
fn domain_label_boundaries_on_the_real_catalog() {
    let ix = index();
    assert_eq!(domain(&ix, "api.openai.com").as_deref(), Some("openai.api"));
    assert_eq!(domain(&ix, "API.OpenAI.com.").as_deref(), Some("openai.api"));
    let api = ix.domain("api.openai.com").map(|m| m.indicator.as_str());
    assert_eq!(api, Some("api"));
    assert_eq!(domain(&ix, "chatgpt.com").as_deref(), Some("openai.chatgpt"));
    assert_eq!(ix.domain("chatgpt.com").map(|m| m.indicator.as_str()), Some("web"));
    for nobody in [
        "notopenai.com",
        "openai.com.evil.example",
        "myopenai.com",
        "google.com",
        "mail.google.com",
        "github.com",
        "example.com",
    ] {
        assert_eq!(domain(&ix, nobody), None, "{nobody}");
    }
    assert_eq!(domain(&ix, "gemini.google.com").as_deref(), Some("google.gemini"));
    assert_eq!(domain(&ix, "claude.ai").as_deref(), Some("anthropic.claude"));
    assert_eq!(domain(&ix, "api.anthropic.com").as_deref(), Some("anthropic.api"));
}

#[test]
fn merchant_examples_from_the_issue() {
    let ix = index();
    let m = |d: &str| ix.merchant(d).map(|m| m.product.id.clone());
    assert_eq!(m("OPENAI *CHATGPT SUBSCR").as_deref(), Some("openai.chatgpt"));
    assert_eq!(m("CLAUDE.AI SUBSCRIPTION").as_deref(), Some("anthropic.claude"));
    assert_eq!(m("CURSOR, AI POWERED IDE").as_deref(), Some("anysphere.cursor"));
    assert_eq!(m("Stripe Inc CURSOR, AI POWERED IDE").as_deref(), Some("anysphere.cursor"));
    assert_eq!(m("PAYPAL *OPENAI").as_deref(), Some("openai.api"));
    assert_eq!(m("SQ *OPENAI CHATGPT 8005551234 CA").as_deref(), Some("openai.chatgpt"));
    assert_eq!(m("GITHUB *COPILOT").as_deref(), Some("github.copilot"));
    for nobody in [
        "GITHUB",
        "GOOGLE",
        "GOOGLE *YOUTUBE",
        "MICROSOFT *STORE",
        "APPLE.COM/BILL",
        "AMAZON MKTPL",
        "STARBUCKS 1234",
    ] {
        assert_eq!(m(nobody), None, "{nobody}");
    }
}

#[test]
fn apps_extensions_processes_ports() {
    let ix = index();
    let id = |m: Option<aiscout_signatures::Match<'_>>| m.map(|m| m.product.id.clone());
    assert_eq!(
        id(ix.app(AppRef::MacosBundleId("com.openai.chat"))).as_deref(),
        Some("openai.chatgpt")
    );
    assert_eq!(
        id(ix.extension(ExtensionRef::Vscode("github.copilot"))).as_deref(),
        Some("github.copilot")
    );
    assert_eq!(id(ix.local_port(11434)).as_deref(), Some("ollama.ollama"));
    assert_eq!(id(ix.cli("ollama")).as_deref(), Some("ollama.ollama"));
    assert_eq!(id(ix.model("gpt-4o")).as_deref(), Some("openai.api"));
    assert_eq!(id(ix.model("claude-sonnet-4-5")).as_deref(), Some("anthropic.api"));
    assert_eq!(id(ix.app(AppRef::MacosBundleId("com.example.chatgpt-clone"))), None);
}
