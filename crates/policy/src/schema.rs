//! The Cedar schema, generated from the model: one entity type for the job's policy attributes
//! (`PolicyAttrs`), one for zones, and the `place` action. The level ranks are written into the
//! schema's comment so policy authors can read them off.

use tidegate_model::Scheme;

/// The Cedar schema text for a fleet's classification scheme.
pub fn schema_text(scheme: &Scheme) -> String {
    let mut s =
        String::from("// Cedar schema for tidegate placement, generated from the fleet model.\n");
    s.push_str("// Classification level ranks (Job.level, Zone.ceiling):");
    for (i, l) in scheme.levels.iter().enumerate() {
        s.push_str(&format!(" {}={i}", l.name));
    }
    s.push_str("\n// Legal tags:");
    for t in &scheme.tags {
        s.push_str(&format!(" {}", t.name));
    }
    s.push_str(" contractual:NAME\n");
    s.push_str(concat!(
        "// Job kinds: train finetune hpo-sweep batch-infer serve edge-infer fl-round sanitize eval\n",
        "// Zone tiers: private-onprem private-cloud public edge; scopes: private public edge\n",
        "entity Job = {\n",
        "  \"team\": String,\n",
        "  \"kind\": String,\n",
        "  \"level\": Long,\n",
        "  \"level_name\": String,\n",
        "  \"tags\": Set<String>,\n",
        "  \"residency_restricted\": Bool,\n",
        "  \"residency\": Set<String>,\n",
        "  \"private_only\": Bool,\n",
        "  \"required_certifications\": Set<String>,\n",
        "  \"stays_in_jurisdiction\": Bool,\n",
        "  \"origin_jurisdictions\": Set<String>,\n",
        "  \"scope\": String,\n",
        "  \"burst_eligible\": Bool,\n",
        "  \"artifacts_released\": Bool,\n",
        "};\n",
        "entity Zone = {\n",
        "  \"name\": String,\n",
        "  \"tier\": String,\n",
        "  \"scope\": String,\n",
        "  \"private\": Bool,\n",
        "  \"provider\": String,\n",
        "  \"region\": String,\n",
        "  \"jurisdiction\": String,\n",
        "  \"certifications\": Set<String>,\n",
        "  \"ceiling\": Long,\n",
        "  \"ceiling_name\": String,\n",
        "};\n",
        "action \"place\" appliesTo { principal: [Job], resource: [Zone], context: {} };\n",
    ));
    s
}
