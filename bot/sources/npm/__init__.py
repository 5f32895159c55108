"""The npm registry: settings (operator `.npmrc`, sanitised project config), validated
documents, the client."""
