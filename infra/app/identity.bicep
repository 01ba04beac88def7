// User-assigned managed identity of the function app.
//
// User-assigned rather than system-assigned: it exists before the app, so every role
// assignment (including the one on the existing Batch account, possibly in another
// subscription) is made before the first deployment of code, and it survives a
// re-created app. Its client id is what the app settings pass to the Functions host
// (`*__clientId`) and to azure-identity (`AZURE_CLIENT_ID`).

@description('Name of the user-assigned managed identity.')
param name string

@description('Azure region.')
param location string

@description('Tags for the identity.')
param tags object = {}

resource identity 'Microsoft.ManagedIdentity/userAssignedIdentities@2023-01-31' = {
  name: name
  location: location
  tags: tags
}

output id string = identity.id
output name string = identity.name
output principalId string = identity.properties.principalId
output clientId string = identity.properties.clientId
